import pytest

from pipeline.exceptions import PlaylistError
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
