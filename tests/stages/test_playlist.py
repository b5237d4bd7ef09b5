import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.model.exceptions import PlaylistError
from stages.playlist import decode_playlist, parse_playlist, unsafe_reason
from tests.builders import make_playlist, slice_uri


def test_parse_counts_numbers_and_flags():
    text = make_playlist(first_seq=7, count=4, discontinuity_at={2}, extra_tags=("#EXT-X-AGORA-ROTATE:90",))
    playlist = parse_playlist(text)
    assert [e.num for e in playlist.entries] == [7, 8, 9, 10]
    assert [e.index for e in playlist.entries] == [0, 1, 2, 3]
    assert [e.discontinuity for e in playlist.entries] == [False, False, True, False]
    assert playlist.entries[0].uri == slice_uri(0)
    assert playlist.endlist
    assert playlist.target_duration == 15
    assert playlist.duration == 60.0
    assert playlist.vendor_tags == ("#EXT-X-AGORA-ROTATE:90",)


def test_parse_without_endlist():
    assert parse_playlist(make_playlist(endlist=False)).endlist is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "#EXTM3U", id="empty"),
        pytest.param("hello\n", "#EXTM3U", id="not-hls"),
        pytest.param("#EXTM3U\n#EXTINF:abc,\nx.ts\n", "cannot be parsed", id="bad-extinf"),
        pytest.param("#EXTM3U\n#EXTINF:-1,\nx.ts\n", "invalid EXTINF", id="negative-extinf"),
        pytest.param("#EXTM3U\n#EXTINF:nan,\nx.ts\n", "invalid EXTINF", id="nan-extinf"),
        pytest.param("#EXTM3U\nx.ts\n", "URI lines", id="uri-without-extinf"),
        pytest.param("#EXTM3U\n#EXT-X-TARGETDURATION:x\n", "cannot be parsed", id="bad-target"),
        pytest.param("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n", "master", id="master"),
    ],
)
def test_parse_rejects(text, message):
    with pytest.raises(PlaylistError, match=message):
        parse_playlist(text)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"\xff\xfe#EXTM3U", "not UTF-8", id="binary"),
        pytest.param(b"#EXTM3U\n\x00", "NUL", id="nul"),
    ],
)
def test_decode_rejects(data, message):
    with pytest.raises(PlaylistError, match=message):
        decode_playlist(data)


def test_decode_strips_bom():
    assert decode_playlist("\ufeff#EXTM3U\n".encode()) == "#EXTM3U\n"


@pytest.mark.parametrize(
    ("uri", "unsafe"),
    [
        pytest.param(slice_uri(0), False, id="agora-name"),
        pytest.param("sid_room:1 & more+%20_20260115093000000.ts", False, id="punctuated-cname"),
        pytest.param("../x.ts", True, id="parent"),
        pytest.param("..", True, id="dotdot"),
        pytest.param(".hidden.ts", True, id="hidden"),
        pytest.param("a/b.ts", True, id="subdir"),
        pytest.param("/etc/passwd", True, id="absolute"),
        pytest.param("a\\b.ts", True, id="backslash"),
        pytest.param("https://evil.example/x.ts", True, id="url"),
        pytest.param("file:x.ts", True, id="file-scheme"),
        pytest.param("x\n.ts", True, id="newline"),
        pytest.param("", True, id="empty"),
    ],
)
def test_unsafe_reason(uri, unsafe):
    assert (unsafe_reason(uri) is not None) is unsafe


# --- hostile input: only PlaylistError, whatever the bytes --------------------------------------------------

REAL = make_playlist(count=4, discontinuity_at=(2,), extra_tags=("#EXT-X-AGORA-ROTATE:0",))
PLAYLIST_WORDS = [
    "#EXTM3U",
    "#EXTINF:",
    "#EXT-X-TARGETDURATION:",
    "#EXT-X-MEDIA-SEQUENCE:",
    "#EXT-X-ENDLIST",
    "#EXT-X-DISCONTINUITY",
    '#EXT-X-KEY:METHOD=AES-128,URI="k"',
    "#EXT-X-BYTERANGE:10@0",
    "#EXT-X-STREAM-INF:",
    '#EXT-X-MAP:URI="i.mp4"',
    "-1",
    "nan",
    "inf",
    "1e309",
    "15.0,",
    ",",
    "\n",
    "\r\n",
    "a.ts",
    "../x.ts",
    "\x00",
]


def parse_or_reject(text: str) -> None:
    try:
        playlist = parse_playlist(text)
    except PlaylistError:
        return
    assert all(math.isfinite(e.duration) and e.duration >= 0 for e in playlist.entries)
    assert [e.index for e in playlist.entries] == list(range(len(playlist.entries)))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600) | st.lists(st.sampled_from(PLAYLIST_WORDS), max_size=40).map("".join))
def test_random_text_is_parsed_or_rejected(text):
    parse_or_reject(text)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5000), st.sampled_from([*PLAYLIST_WORDS, "", "9" * 400])), max_size=8)
)
def test_mutated_playlists_are_parsed_or_rejected(edits):
    text = REAL
    for pos, word in edits:
        at = pos % (len(text) + 1)
        text = text[:at] + word + text[at + len(word) // 2 :]
    parse_or_reject(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_decode_or_reject(data):
    try:
        text = decode_playlist(data)
    except PlaylistError:
        return
    parse_or_reject(text)


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("#EXT-X-TARGETDURATION:" + "9" * 400, id="huge-target"),
        pytest.param("#EXT-X-MEDIA-SEQUENCE:" + "9" * 400, id="huge-sequence"),
        pytest.param("#EXT-X-MEDIA-SEQUENCE:-1", id="negative-sequence"),
    ],
)
def test_out_of_range_numbers_are_rejected(tag):
    text = "#EXTM3U\n" + tag + "\n#EXTINF:15.0,\na.ts\n#EXT-X-ENDLIST\n"
    with pytest.raises(PlaylistError, match="out of range"):
        parse_playlist(text)
