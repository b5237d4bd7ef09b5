"""The slice facts model: derived durations, kinds and the problems sentence."""

from dataclasses import replace

import pytest

from pipeline.model.media import SliceMedia
from tests.builders import media


def test_duration_is_the_union_of_the_streams():
    m = media(10.0, 15.0)
    assert m.duration_s == pytest.approx(15.0)
    assert m.kinds == {"video", "audio"}
    assert m.resolution == (320, 240)
    assert m.readable


def test_what_is_worked_out_once_follows_a_replaced_slice():
    """The media streams and the start and end are computed when the record is made (and made again
    by ``replace``); they take no part in equality."""
    m = media(10.0, 15.0)
    video = replace(m, streams=tuple(s for s in m.streams if s.kind == "video"))
    assert video.kinds == {"video"}
    assert video.end_ticks - video.start_ticks == 15 * 90_000
    assert replace(m, streams=()).start_ticks is None
    assert replace(m, streams=()).media_streams == ()
    assert replace(m) == m


def test_nothing_readable():
    m = SliceMedia(size=0, packets=0)
    assert (m.duration_s, m.kinds, m.resolution, m.readable) == (None, frozenset(), None, False)
    assert m.problems() == ("holds no MPEG-TS packets (no 0x47 sync byte every 188 bytes)",)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        pytest.param({}, [], id="sound"),
        pytest.param({"skipped_bytes": 40, "resyncs": 1}, ["40 bytes out of packet sync (1 resyncs)"],
                     id="resync"),
        pytest.param({"trailing_bytes": 7}, ["partial 7-byte packet (truncated)"], id="truncated"),
        pytest.param({"transport_errors": 2}, ["2 packets flagged with transport errors"], id="tei"),
        pytest.param({"has_pat": False}, ["no program association table"], id="no-pat"),
        pytest.param({"has_pmt": False, "streams": ()}, ["no program map table"], id="no-pmt"),
        pytest.param({"streams": ()}, ["no audio or video with timestamps"], id="no-media"),
        pytest.param({"size": 10**6, "skipped_bytes": 10**6 - 18800, "has_pmt": False, "streams": ()},
                     ["is not MPEG-TS: only 18800 of its 1000000 bytes"], id="mostly-garbage"),
    ],
)  # fmt: skip
def test_problems(changes, words):
    problems = replace(media(), **changes).problems()
    assert len(problems) == len(words)
    for problem, word in zip(problems, words, strict=True):
        assert word in problem
