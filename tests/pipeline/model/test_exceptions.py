import pytest

from pipeline.model import exceptions
from pipeline.model.exceptions import AmbiguousRecording, PipelineError


def test_every_error_is_a_pipeline_error_and_drawn_in_the_tree():
    doc = exceptions.__doc__ or ""
    for name, value in vars(exceptions).items():
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, PipelineError), name
            assert name in doc, f"{name} is missing from the tree in the module docstring"


def test_ambiguous_lists_candidates():
    err = AmbiguousRecording("2 recordings", candidates=["a.m3u8", "b.m3u8"])
    assert str(err).splitlines() == ["2 recordings", "  a.m3u8", "  b.m3u8"]


@pytest.mark.parametrize("count", [11, 500])
def test_ambiguous_caps_a_long_list(count):
    err = AmbiguousRecording(f"{count} recordings", candidates=[f"r{i}.m3u8" for i in range(count)])
    lines = str(err).splitlines()
    assert len(lines) == 1 + AmbiguousRecording.SHOWN + 1
    assert lines[-1].strip().startswith(f"... and {count - AmbiguousRecording.SHOWN} more")
    assert err.candidates[-1] == f"r{count - 1}.m3u8"
