"""The synthetic recording generator: real ffmpeg runs and its pure helpers."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.model.exceptions import ConfigError, ToolError
from pipeline.model.naming import parse_name, playlist_name, slice_name
from pipeline.samples.composite import (
    DEFECTS,
    HlsEntry,
    build_playlist,
    default_sid,
    offsets,
    parse_hls_entries,
    write_sample,
)

START = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def small(directory: Path, ffmpeg: str, **kwargs):
    return write_sample(directory, ffmpeg=ffmpeg, seconds=6, slice_seconds=2, **kwargs)


def read_playlist(path: Path) -> tuple[list[tuple[float, str]], list[str]]:
    """``(duration, uri)`` per entry, and every line."""
    lines = path.read_text().splitlines()
    entries = [
        (float(line.removeprefix("#EXTINF:").rstrip(",")), lines[i + 1])
        for i, line in enumerate(lines)
        if line.startswith("#EXTINF:")
    ]
    return entries, lines


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.ffmpeg
def test_clean_sample(tmp_path, ffmpeg_exe):
    made = small(tmp_path / "rec", ffmpeg_exe)
    assert made.directory == tmp_path / "rec"
    assert made.playlist == made.directory / playlist_name(made.sid, "demo-room")
    assert "_" not in made.sid
    entries, lines = read_playlist(made.playlist)
    assert lines[0] == "#EXTM3U"
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert "#EXT-X-TARGETDURATION:2" in lines
    assert [uri for _, uri in entries] == [p.name for p in made.slices]
    assert len(made.slices) == 3
    assert made.seconds == pytest.approx(sum(d for d, _ in entries)) == pytest.approx(6.0)
    elapsed = 0.0
    for (duration, uri), path in zip(entries, made.slices, strict=True):
        name = parse_name(uri)
        assert (name.kind, name.sid, name.cname) == ("slice", made.sid, "demo-room")
        assert name.utc == START + timedelta(seconds=elapsed)
        elapsed += duration
        data = path.read_bytes()
        assert len(data) > 1000
        assert data[0] == 0x47  # MPEG-TS sync byte
    assert sorted(p.name for p in made.directory.iterdir()) == sorted(
        [made.playlist.name, *(p.name for p in made.slices)]
    )


@pytest.mark.ffmpeg
def test_profile_describes_the_sample(tmp_path, ffmpeg_exe):
    made = small(tmp_path / "rec", ffmpeg_exe, cname="room 7", width=160, height=120, fps=10)
    assert made.profile["cname"] == "room 7"
    request = made.profile["clientRequest"]
    assert request["recordingConfig"]["streamTypes"] == 2
    transcoding = request["recordingConfig"]["transcodingConfig"]
    assert (transcoding["width"], transcoding["height"], transcoding["fps"]) == (160, 120, 10)
    assert transcoding["bitrate"] > 0
    assert request["recordingFileConfig"] == {"avFileType": ["hls", "mp4"]}
    assert request["storageConfig"]["fileNamePrefix"] == ["recordings"]
    assert made.playlist.name == playlist_name(made.sid, "room 7")


@pytest.mark.ffmpeg
def test_deterministic(tmp_path, ffmpeg_exe):
    first = small(tmp_path / "a", ffmpeg_exe)
    second = small(tmp_path / "b", ffmpeg_exe)
    assert first.sid == second.sid
    assert contents(first.directory) == contents(second.directory)


@pytest.mark.ffmpeg
def test_uneven_length_has_a_short_last_slice(tmp_path, ffmpeg_exe):
    made = write_sample(tmp_path / "rec", ffmpeg=ffmpeg_exe, seconds=5, slice_seconds=2)
    entries, _ = read_playlist(made.playlist)
    assert [d for d, _ in entries] == pytest.approx([2.0, 2.0, 1.0])
    assert made.seconds == pytest.approx(5.0)


@pytest.mark.ffmpeg
def test_given_sid_and_start(tmp_path, ffmpeg_exe):
    start = datetime(2030, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    made = small(tmp_path / "rec", ffmpeg_exe, sid="abc123", start=start)
    assert made.sid == "abc123"
    assert made.slices[0].name == slice_name("abc123", "demo-room", start)
    assert made.slices[1].name == slice_name("abc123", "demo-room", start + timedelta(seconds=2))


# --- defects -------------------------------------------------------------------------------------------


@pytest.mark.ffmpeg
def test_missing_slice(tmp_path, ffmpeg_exe):
    made = small(tmp_path / "rec", ffmpeg_exe, defect="missing-slice")
    entries, _ = read_playlist(made.playlist)
    assert [uri for _, uri in entries] == [p.name for p in made.slices]
    assert [p.exists() for p in made.slices] == [True, False, True]


@pytest.mark.ffmpeg
def test_no_endlist(tmp_path, ffmpeg_exe):
    made = small(tmp_path / "rec", ffmpeg_exe, defect="no-endlist")
    entries, lines = read_playlist(made.playlist)
    assert "#EXT-X-ENDLIST" not in lines
    assert len(entries) == 3
    assert all(p.stat().st_size > 0 for p in made.slices)


@pytest.mark.ffmpeg
def test_unsafe_uri(tmp_path, ffmpeg_exe):
    made = small(tmp_path / "rec", ffmpeg_exe, defect="unsafe-uri")
    entries, _ = read_playlist(made.playlist)
    uris = [uri for _, uri in entries]
    assert uris == [made.slices[0].name, f"../{made.slices[1].name}", made.slices[2].name]
    assert all(p.exists() for p in made.slices)


@pytest.mark.ffmpeg
def test_empty_slice(tmp_path, ffmpeg_exe):
    made = small(tmp_path / "rec", ffmpeg_exe, defect="empty-slice")
    assert [p.stat().st_size == 0 for p in made.slices] == [False, True, False]
    entries, _ = read_playlist(made.playlist)
    assert len(entries) == 3


@pytest.mark.ffmpeg
def test_orphan(tmp_path, ffmpeg_exe):
    made = small(tmp_path / "rec", ffmpeg_exe, defect="orphan")
    entries, lines = read_playlist(made.playlist)
    assert [uri for _, uri in entries] == [p.name for p in made.slices]
    assert "#EXT-X-ENDLIST" in lines
    listed = {made.playlist.name, *(p.name for p in made.slices)}
    [orphan] = [p for p in made.directory.iterdir() if p.name not in listed]
    name = parse_name(orphan.name)
    assert (name.kind, name.sid, name.cname) == ("slice", made.sid, made.cname)
    assert name.utc == START + timedelta(seconds=6)
    assert name.utc > parse_name(made.slices[-1].name).utc
    assert orphan.stat().st_size > 0


@pytest.mark.ffmpeg
@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_every_defect_keeps_names_and_descriptions(tmp_path, ffmpeg_exe, defect):
    made = small(tmp_path / "rec", ffmpeg_exe, defect=defect)
    assert DEFECTS[defect]
    assert "\n" not in DEFECTS[defect]
    assert made.playlist.exists()
    for path in made.directory.iterdir():
        assert parse_name(path.name).cname == "demo-room"


# --- refusing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"seconds": 0, "slice_seconds": 1}, "slice_seconds", id="zero-seconds"),
        pytest.param({"seconds": 4, "slice_seconds": 0}, "slice_seconds", id="zero-slice"),
        pytest.param({"seconds": 3, "slice_seconds": 4}, "slice_seconds", id="shorter-than-slice"),
        pytest.param({"defect": "gremlins"}, "missing-slice", id="unknown-defect"),
        pytest.param(
            {"seconds": 4, "slice_seconds": 2, "defect": "missing-slice"}, "3 slices", id="no-middle"
        ),
        pytest.param({"width": 321}, "even", id="odd-width"),
        pytest.param({"height": 0}, "even", id="zero-height"),
        pytest.param({"fps": 0}, "fps", id="zero-fps"),
        pytest.param({"sid": "has_underscore"}, "sid", id="bad-sid"),
        pytest.param({"cname": "bad/name"}, "cname", id="bad-cname"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"seconds": 6, "slice_seconds": 2} | kwargs
    with pytest.raises(ConfigError, match=match):
        write_sample(tmp_path / "rec", ffmpeg="/nonexistent/ffmpeg", **args)
    assert not (tmp_path / "rec").exists()


@pytest.mark.ffmpeg
def test_refuses_a_non_empty_directory(tmp_path, ffmpeg_exe):
    made = small(tmp_path / "rec", ffmpeg_exe)
    before = contents(made.directory)
    with pytest.raises(ConfigError, match="--force"):
        small(made.directory, ffmpeg_exe)
    assert contents(made.directory) == before


@pytest.mark.ffmpeg
def test_force_replaces_a_previous_sample(tmp_path, ffmpeg_exe):
    old = small(tmp_path / "rec", ffmpeg_exe, defect="orphan")
    new = write_sample(old.directory, ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, force=True)
    assert new.sid != old.sid
    assert sorted(contents(new.directory)) == sorted([new.playlist.name, *(p.name for p in new.slices)])


@pytest.mark.ffmpeg
@pytest.mark.parametrize(
    "foreign",
    [
        pytest.param("notes.txt", id="other-file"),
        pytest.param("sid1_other-room.m3u8", id="other-cname"),
        pytest.param("sid1_demo-room_20260115093000000_0.mp4", id="mp4-output"),
    ],
)
def test_force_never_removes_anything_else(tmp_path, ffmpeg_exe, foreign):
    old = small(tmp_path / "rec", ffmpeg_exe)
    (old.directory / foreign).write_text("keep me")
    before = contents(old.directory)
    with pytest.raises(ConfigError, match="not a previous sample"):
        small(old.directory, ffmpeg_exe, force=True)
    assert contents(old.directory) == before


def test_refuses_a_file_as_directory(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        write_sample(target, ffmpeg="/nonexistent/ffmpeg", seconds=6, slice_seconds=2)


def test_missing_ffmpeg_is_a_tool_error(tmp_path):
    with pytest.raises(ToolError, match="cannot run ffmpeg"):
        write_sample(tmp_path / "rec", ffmpeg=str(tmp_path / "nope"), seconds=6, slice_seconds=2)
    assert list((tmp_path / "rec").iterdir()) == []


def test_failing_ffmpeg_is_a_tool_error_with_its_stderr(tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(ToolError, match="Unknown encoder libx264"):
        write_sample(tmp_path / "rec", ffmpeg=str(fake), seconds=6, slice_seconds=2)
    assert list((tmp_path / "rec").iterdir()) == []


# --- pure helpers --------------------------------------------------------------------------------------


def test_default_sid_is_stable_and_plain():
    sid = default_sid("demo-room", start=START, seconds=45)
    assert sid == default_sid("demo-room", start=START, seconds=45)
    assert len(sid) == 32
    assert set(sid) <= set("0123456789abcdef")
    assert sid != default_sid("demo-room", start=START, seconds=46)
    assert sid != default_sid("other", start=START, seconds=45)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000000,\nseg0.ts\n#EXTINF:1.5,\nseg1.ts\n#EXT-X-ENDLIST\n",
            (HlsEntry("seg0.ts", "2.000000"), HlsEntry("seg1.ts", "1.5")),
            id="plain",
        ),
        pytest.param("#EXTINF:3,title\r\nseg.ts\r\n", (HlsEntry("seg.ts", "3"),), id="crlf-title"),
    ],
)
def test_parse_hls_entries(text, expected):
    assert parse_hls_entries(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("#EXTM3U\n#EXT-X-ENDLIST\n", id="no-slices"),
        pytest.param("#EXTM3U\nseg.ts\n", id="no-extinf"),
        pytest.param("#EXTINF:abc,\nseg.ts\n", id="bad-duration"),
        pytest.param("#EXTINF:-1,\nseg.ts\n", id="negative"),
        pytest.param("#EXTINF:nan,\nseg.ts\n", id="nan"),
    ],
)
def test_parse_hls_entries_errors(text):
    with pytest.raises(ToolError):
        parse_hls_entries(text)


def test_offsets_are_cumulative_to_the_millisecond():
    entries = [HlsEntry("a", "2.0021"), HlsEntry("b", "2.0021"), HlsEntry("c", "1")]
    assert offsets(entries) == (timedelta(0), timedelta(milliseconds=2002), timedelta(milliseconds=4004))


@pytest.mark.parametrize(
    ("endlist", "last"),
    [pytest.param(True, "#EXT-X-ENDLIST", id="complete"), pytest.param(False, "b.ts", id="in-progress")],
)
def test_build_playlist(endlist, last):
    text = build_playlist([HlsEntry("a.ts", "15.000000"), HlsEntry("b.ts", "15.200000")], endlist=endlist)
    lines = text.splitlines()
    assert lines[:5] == [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-ALLOW-CACHE:YES",
        "#EXT-X-TARGETDURATION:16",
    ]
    assert lines[5:9] == ["#EXTINF:15.000000", "a.ts", "#EXTINF:15.200000", "b.ts"]  # Agora's default
    assert lines[-1] == last
    assert text.endswith("\n")


def test_build_playlist_with_the_comma_of_correct_extinf():
    text = build_playlist([HlsEntry("a.ts", "15.000000")], extinf_comma=True)
    assert "#EXTINF:15.000000,\na.ts\n" in text


@pytest.mark.ffmpeg
@pytest.mark.parametrize(
    ("mode", "playlists"),
    [pytest.param("raw", 2, id="raw"), pytest.param("failover", 2, id="failover"),
     pytest.param("backuped", 2, id="backuped")],
)  # fmt: skip
def test_sample_modes_from_the_command_line(tmp_path, mode, playlists):
    from click.testing import CliRunner

    from pipeline.cli import main

    result = CliRunner().invoke(main, ["sample", str(tmp_path / "s"), "--mode", mode], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s" / "recordings").glob("*.m3u8"))) == playlists
    listed = CliRunner().invoke(main, ["ls", str(tmp_path / "s"), "--json"], catch_exceptions=False)
    assert listed.exit_code == 0
    assert len(json.loads(listed.stdout)) == (2 if mode == "raw" else 1)
    if mode == "backuped":
        assert len(list((tmp_path / "s-late").glob("*.ts"))) == 1
