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


def all_error_classes() -> list[type[exceptions.PipelineError]]:
    found, todo = [], [exceptions.PipelineError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_is_in_the_tree_and_says_what_it_means(cls):
    """Each class is drawn in the module's tree and answers the three questions callers ask."""
    assert f"── {cls.__name__} " in exceptions.__doc__ or cls is exceptions.PipelineError
    assert cls.__module__ == exceptions.__name__
    assert isinstance(cls.exit_code, int)
    assert cls.exit_code in (1, 2)
    assert isinstance(cls.retryable, bool)
    assert cls.finding is None or cls.finding.isupper()
