from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.model.exceptions import NamingError
from pipeline.model.naming import (
    CNAME_CHARS,
    MAX_INDEX,
    MEDIAS,
    AgoraName,
    check_cname,
    check_sid,
    check_uid,
    format_name,
    format_utc,
    is_snapshot_playlist,
    mp4_name,
    parse_name,
    parse_utc,
    playlist_name,
    report_name,
    slice_name,
)

SID = "sid713476478245"
HEX_SID = "5c7ed53c1fa9bed3dd2a9fa74bdd8ad2"
T0 = datetime(2019, 9, 20, 12, 51, 42, 485000, tzinfo=UTC)
T1 = datetime(2019, 6, 11, 7, 32, 46, 73000, tzinfo=UTC)


def _name(kind: str, **parts: object) -> AgoraName:
    ext = {"playlist": "m3u8", "slice": "ts", "mp4": "mp4"}.get(kind, "m3u8")
    return AgoraName(**{"kind": kind, "sid": SID, "cname": "cnameagora", "ext": ext, **parts})  # type: ignore[arg-type]


# --- utc --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "20190611073246073", datetime(2019, 6, 11, 7, 32, 46, 73000, tzinfo=UTC), id="agora-doc"
        ),
        pytest.param("20190920125142485", T0, id="individual-example"),
        pytest.param(
            "20240229235959999", datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC), id="leap-day"
        ),
        pytest.param("00010101000000000", datetime(1, 1, 1, tzinfo=UTC), id="min"),
        pytest.param("99991231235959999", datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), id="max"),
    ],
)
def test_parse_utc(text: str, expected: datetime) -> None:
    parsed = parse_utc(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC
    assert format_utc(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2019061107324607", id="16-digits"),
        pytest.param("201906110732460730", id="18-digits"),
        pytest.param("", id="empty"),
        pytest.param("2019061107324607a", id="letter"),
        pytest.param("2019-06-11T07:32", id="iso"),
        pytest.param("20190230073246073", id="feb-30"),
        pytest.param("20230229073246073", id="feb-29-non-leap"),
        pytest.param("20191311073246073", id="month-13"),
        pytest.param("20190011073246073", id="month-0"),
        pytest.param("20190611243246073", id="hour-24"),
        pytest.param("20190611076046073", id="minute-60"),
        pytest.param("20190611073260073", id="second-60"),
        pytest.param("00000611073246073", id="year-0"),
        pytest.param("２0190611073246073", id="fullwidth-digit"),
        pytest.param("٢0190611073246073", id="arabic-indic-digit"),
        pytest.param(" 0190611073246073", id="space"),
    ],
)
def test_parse_utc_rejects(text: str) -> None:
    with pytest.raises(NamingError):
        parse_utc(text)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param(datetime(2019, 6, 11, 7, 32, 46, 73000), "20190611073246073", id="naive-is-utc"),
        pytest.param(
            datetime(2019, 6, 11, 7, 32, 46, 73999, tzinfo=UTC), "20190611073246073", id="truncates"
        ),
        pytest.param(
            datetime(2019, 6, 11, 9, 32, 46, 73000, tzinfo=timezone(timedelta(hours=2))),
            "20190611073246073",
            id="converts-to-utc",
        ),
        pytest.param(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "09990102030405000", id="year-padded"),
    ],
)
def test_format_utc(when: datetime, expected: str) -> None:
    assert format_utc(when) == expected


def test_format_utc_without_utc_equivalent() -> None:
    with pytest.raises(NamingError):
        format_utc(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))


@settings(database=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)))
def test_utc_round_trip(when: datetime) -> None:
    text = format_utc(when)
    assert len(text) == 17
    assert format_utc(parse_utc(text)) == text
    assert parse_utc(text) == when.replace(microsecond=when.microsecond // 1000 * 1000, tzinfo=UTC)


@settings(database=None)
@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_parse_utc_of_any_17_digits_round_trips_or_raises(text: str) -> None:
    try:
        parsed = parse_utc(text)
    except NamingError:
        return
    assert format_utc(parsed) == text


# --- parse_name / format_name: tables ------------------------------------------------------------------

VALID_NAMES = [
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_video_20190920125142485.ts",
        _name("slice", uid="123", media="video", utc=T0),
        id="agora-individual-video-slice",
    ),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_audio.m3u8",
        _name("playlist", uid="123", media="audio"),
        id="agora-individual-audio-playlist",
    ),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_audio_20190920125142485.ts",
        _name("slice", uid="123", media="audio", utc=T0),
        id="individual-audio-slice",
    ),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_video_20190920125142485.webm",
        _name("slice", uid="123", media="video", utc=T0, ext="webm"),
        id="individual-webm-slice",
    ),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_av_0.mp4",
        _name("mp4", uid="123", media="av", index=0),
        id="individual-av-mp4",
    ),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_4294967295__uid_e_video_12.mp4",
        _name("mp4", uid="4294967295", media="video", index=12),
        id="individual-max-uid-mp4",
    ),
    pytest.param(
        f"{HEX_SID}_httpClient463224_20190611073246073.ts",
        AgoraName(kind="slice", sid=HEX_SID, cname="httpClient463224", utc=T1, ext="ts"),
        id="agora-composite-slice",
    ),
    pytest.param(
        f"{HEX_SID}_httpClient463224.m3u8",
        AgoraName(kind="playlist", sid=HEX_SID, cname="httpClient463224", ext="m3u8"),
        id="composite-playlist",
    ),
    pytest.param(
        f"{HEX_SID}_httpClient463224_0.mp4",
        AgoraName(kind="mp4", sid=HEX_SID, cname="httpClient463224", index=0, ext="mp4"),
        id="composite-mp4",
    ),
    pytest.param(
        f"bak0_{HEX_SID}_httpClient463224.m3u8",
        AgoraName(kind="playlist", sid=HEX_SID, cname="httpClient463224", ext="m3u8", backup=0),
        id="failover-playlist",
    ),
    pytest.param(
        f"bak12_{HEX_SID}_httpClient463224_20190611073246073.ts",
        AgoraName(kind="slice", sid=HEX_SID, cname="httpClient463224", utc=T1, ext="ts", backup=12),
        id="failover-slice",
    ),
    pytest.param(
        f"bak0_{HEX_SID}_httpClient463224_1.mp4",
        AgoraName(kind="mp4", sid=HEX_SID, cname="httpClient463224", index=1, ext="mp4", backup=0),
        id="failover-mp4",
    ),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_h264.m3u8",
        _name("playlist", uid="123", codec="h264"),
        id="v2-playlist",
    ),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_20190611073246073_h264.ts",
        _name("slice", uid="123", codec="h264", utc=T1),
        id="v2-slice-utc-before-codec",
    ),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_0_h265.mp4",
        _name("mp4", uid="123", codec="h265", index=0),
        id="v2-mp4-index-before-codec",
    ),
    pytest.param(
        "bak1_sid713476478245_cnameagora__uid_s_123__uid_e_20190611073246073_av1.ts",
        _name("slice", uid="123", codec="av1", utc=T1, backup=1),
        id="v2-failover-slice",
    ),
    pytest.param(
        "sid713476478245_room_20190920125142485.m3u8",
        _name("playlist", cname="room_20190920125142485"),
        id="cname-ending-in-utc-playlist",
    ),
    pytest.param(
        "sid713476478245_room_20190920125142485_20190611073246073.ts",
        _name("slice", cname="room_20190920125142485", utc=T1),
        id="cname-ending-in-utc-slice-last-run-wins",
    ),
    pytest.param(
        "sid713476478245_room_1_10.mp4",
        _name("mp4", cname="room_1", index=10),
        id="cname-with-underscore-digit-mp4",
    ),
    pytest.param(
        "sid713476478245_My Room #1 (test)_20190611073246073.ts",
        _name("slice", cname="My Room #1 (test)", utc=T1),
        id="cname-space-punctuation",
    ),
    pytest.param(
        "sid713476478245_a+b%20&c=d?e@f.m3u8",
        _name("playlist", cname="a+b%20&c=d?e@f"),
        id="cname-url-like",
    ),
    pytest.param(
        "sid713476478245_!#$%&()+-:;<=.>?@[]^_{|}~,.m3u8",
        _name("playlist", cname="!#$%&()+-:;<=.>?@[]^_{|}~,"),
        id="cname-all-punctuation",
    ),
    pytest.param(
        "sid713476478245__lead_and_trail__20190611073246073.ts",
        _name("slice", cname="_lead_and_trail_", utc=T1),
        id="cname-leading-trailing-underscores",
    ),
    pytest.param(
        "sid713476478245_..m3u8",
        _name("playlist", cname="."),
        id="cname-dot",
    ),
    pytest.param(
        "sid713476478245_room.ts_20190611073246073.ts",
        _name("slice", cname="room.ts", utc=T1),
        id="cname-with-extension",
    ),
    pytest.param(
        "sid713476478245__uid_s_x.m3u8",
        _name("playlist", cname="_uid_s_x"),
        id="cname-looks-like-marker-but-is-composite",
    ),
    pytest.param(
        "sid713476478245_" + "c" * 64 + ".m3u8",
        _name("playlist", cname="c" * 64),
        id="cname-64-bytes",
    ),
    pytest.param(
        "sid713476478245_room__uid_s_user_name 1__uid_e_audio.m3u8",
        _name("playlist", cname="room", uid="user_name 1", media="audio"),
        id="user-account-uid",
    ),
    pytest.param(
        "sid713476478245_room__uid_s_a__uid_e_video__uid_e_audio.m3u8",
        _name("playlist", cname="room", uid="a__uid_e_video", media="audio"),
        id="uid-containing-end-marker",
    ),
    pytest.param(
        "sid713476478245_room__uid_s_a___uid_e_audio.m3u8",
        _name("playlist", cname="room", uid="a_", media="audio"),
        id="uid-trailing-underscore",
    ),
    pytest.param(
        "sid713476478245_x__uid_s__uid_s_1__uid_e_audio.m3u8",
        _name("playlist", cname="x", uid="_uid_s_1", media="audio"),
        id="first-start-marker-ends-cname",
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID_NAMES)
def test_parse_name(text: str, expected: AgoraName) -> None:
    parsed = parse_name(text)
    assert parsed == expected
    assert parsed.individual is (expected.uid is not None)
    assert format_name(parsed) == text


INVALID_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("..", id="dotdot"),
    pytest.param(".", id="dot"),
    pytest.param(".m3u8", id="only-ext"),
    pytest.param("sid713476478245.m3u8", id="no-cname"),
    pytest.param("sid713476478245_.m3u8", id="empty-cname"),
    pytest.param("_cnameagora.m3u8", id="empty-sid"),
    pytest.param("sid713476478245_cnameagora", id="no-ext"),
    pytest.param("sid713476478245_cnameagora.", id="empty-ext"),
    pytest.param("sid713476478245_cnameagora.M3U8", id="uppercase-ext"),
    pytest.param("sid713476478245_cnameagora.mp3", id="mp3"),
    pytest.param("sid713476478245_cnameagora_20190611073246073.mp4", id="composite-mp4-utc-not-index"),
    pytest.param("sid713476478245_cnameagora.mp4", id="composite-mp4-without-index"),
    pytest.param("sid713476478245_cnameagora_01.mp4", id="mp4-index-leading-zero"),
    pytest.param("sid713476478245_cnameagora_-1.mp4", id="mp4-index-negative"),
    pytest.param("sid713476478245_cnameagora_1000000000.mp4", id="mp4-index-10-digits"),
    pytest.param("sid713476478245_cnameagora_.mp4", id="mp4-index-empty"),
    pytest.param("sid713476478245_cnameagora__uid_s_123__uid_e_H264.m3u8", id="v2-uppercase-codec"),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_h264_20190611073246073.ts", id="v2-codec-first"
    ),
    pytest.param("sid713476478245_cnameagora__uid_s_123__uid_e_20190611073246073_h264.webm", id="v2-webm"),
    pytest.param("sid713476478245_cnameagora__uid_s_123__uid_e_0_1_h264.mp4", id="v2-two-numbers"),
    pytest.param("sid713476478245_cnameagora_2019061107324607.ts", id="utc-16-digits"),
    pytest.param("sid713476478245_cnameagora_201906110732460731.ts", id="utc-18-digits"),
    pytest.param("sid713476478245_cnameagora_20190230073246073.ts", id="utc-feb-30"),
    pytest.param("sid713476478245_cnameagora_20190611250000000.ts", id="utc-hour-25"),
    pytest.param("sid713476478245_cnameagora.ts", id="slice-without-utc"),
    pytest.param("sid713476478245_20190611073246073.ts", id="slice-without-cname"),
    pytest.param("sid713476478245_cnameagora_20190611073246073.webm", id="composite-webm"),
    pytest.param("sid713476478245_cnameagora_20190611073246073.m3u8.ts", id="utc-not-at-end"),
    pytest.param("../sid713476478245_cnameagora.m3u8", id="parent-dir"),
    pytest.param("dir/sid713476478245_cnameagora.m3u8", id="slash"),
    pytest.param("dir\\sid713476478245_cnameagora.m3u8", id="backslash"),
    pytest.param("sid713476478245_cname/agora.m3u8", id="slash-in-cname"),
    pytest.param("sid713476478245_cname\x00agora.m3u8", id="nul"),
    pytest.param("sid713476478245_cname\nagora.m3u8", id="newline"),
    pytest.param("sid713476478245_cname\tagora.m3u8", id="tab"),
    pytest.param("sid 713_cnameagora.m3u8", id="space-in-sid"),
    pytest.param("sid713476478245_cnameägora.m3u8", id="non-ascii-cname"),
    pytest.param("sid713476478245_cname*agora.m3u8", id="star-in-cname"),
    pytest.param("sid713476478245_cname'agora.m3u8", id="quote-in-cname"),
    pytest.param("sid713476478245_" + "c" * 1025 + ".m3u8", id="cname-1025-bytes"),
    pytest.param("sid713476478245_cnameagora__uid_s___uid_e_audio.m3u8", id="empty-uid"),
    pytest.param("sid713476478245_cnameagora__uid_s_123.m3u8", id="no-end-marker"),
    pytest.param("sid713476478245_cnameagora__uid_s_123__uid_e_.m3u8", id="empty-media"),
    pytest.param("sid713476478245_cnameagora__uid_s_123__uid_e_Audio.m3u8", id="uppercase-media"),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_audio_20190611073246073.m3u8", id="playlist-utc"
    ),
    pytest.param("sid713476478245_cnameagora__uid_s_123__uid_e_audio.ts", id="individual-slice-no-utc"),
    pytest.param("sid713476478245_cnameagora__uid_s_123__uid_e_audio_2019.ts", id="individual-short-utc"),
    pytest.param("sid713476478245_cnameagora__uid_s_123__uid_e_audio.mp4", id="individual-mp4-no-index"),
    pytest.param(
        "sid713476478245_cnameagora__uid_s_123__uid_e_audio_20190611073246073_0.mp4", id="individual-mp4-utc"
    ),
    pytest.param("sid713476478245_cnameagora__uid_s_12/3__uid_e_audio.m3u8", id="slash-in-uid"),
    pytest.param("sid713476478245_cnameagora__uid_s_" + "1" * 256 + "__uid_e_audio.m3u8", id="uid-256-bytes"),
]


@pytest.mark.parametrize("text", INVALID_NAMES)
def test_parse_name_rejects(text: str) -> None:
    with pytest.raises(NamingError) as info:
        parse_name(text)
    assert repr(text) in str(info.value)


# --- AgoraName validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param({"kind": "playlist", "sid": ""}, id="empty-sid"),
        pytest.param({"kind": "playlist", "sid": "a_b"}, id="underscore-sid"),
        pytest.param({"kind": "playlist", "sid": "a/b"}, id="slash-sid"),
        pytest.param({"kind": "playlist", "sid": "a\u00a0b"}, id="nbsp-sid"),
        pytest.param({"kind": "playlist", "cname": ""}, id="empty-cname"),
        pytest.param({"kind": "playlist", "cname": "a__uid_s"}, id="cname-ends-in-marker"),
        pytest.param({"kind": "playlist", "uid": "1"}, id="uid-without-media"),
        pytest.param({"kind": "playlist", "media": "audio"}, id="media-without-uid"),
        pytest.param({"kind": "playlist", "uid": "1", "media": "screen"}, id="unknown-media"),
        pytest.param({"kind": "playlist", "ext": "ts"}, id="playlist-ts"),
        pytest.param({"kind": "playlist", "utc": T0}, id="playlist-utc"),
        pytest.param({"kind": "playlist", "index": 0}, id="playlist-index"),
        pytest.param({"kind": "folder", "ext": "m3u8"}, id="unknown-kind"),
        pytest.param({"kind": "slice"}, id="slice-without-utc"),
        pytest.param({"kind": "slice", "utc": T0, "ext": "mp4"}, id="slice-mp4"),
        pytest.param({"kind": "slice", "utc": T0, "ext": "webm"}, id="composite-webm"),
        pytest.param({"kind": "slice", "utc": T0, "index": 1}, id="slice-index"),
        pytest.param({"kind": "mp4"}, id="mp4-without-index"),
        pytest.param({"kind": "mp4", "index": -1}, id="mp4-negative-index"),
        pytest.param({"kind": "mp4", "index": MAX_INDEX + 1}, id="mp4-huge-index"),
        pytest.param({"kind": "mp4", "index": True}, id="mp4-bool-index"),
        pytest.param({"kind": "mp4", "index": 0, "utc": T0}, id="composite-mp4-with-utc"),
        pytest.param(
            {"kind": "playlist", "uid": "1", "media": "audio", "codec": "h264"}, id="media-and-codec"
        ),
        pytest.param({"kind": "playlist", "uid": "1", "codec": "audio"}, id="codec-named-like-media"),
        pytest.param({"kind": "playlist", "codec": "h264"}, id="codec-without-uid"),
        pytest.param({"kind": "playlist", "backup": -1}, id="negative-backup"),
        pytest.param({"kind": "playlist", "backup": True}, id="bool-backup"),
        pytest.param(
            {"kind": "mp4", "index": 0, "utc": T0, "uid": "1", "media": "av"}, id="individual-mp4-utc"
        ),
    ],
)
def test_agora_name_rejects(parts: dict[str, object]) -> None:
    with pytest.raises(NamingError):
        _name(**parts)  # type: ignore[arg-type]


def test_agora_name_normalises_utc() -> None:
    local = datetime(2019, 9, 20, 14, 51, 42, 485999, tzinfo=timezone(timedelta(hours=2)))
    name = _name("slice", utc=local)
    assert name.utc == T0
    assert name.utc is not None
    assert name.utc.tzinfo is UTC
    assert _name("slice", utc=datetime(2019, 9, 20, 12, 51, 42, 485000)).utc == T0
    assert parse_name(format_name(name)) == name


def test_agora_name_is_frozen() -> None:
    name = _name("playlist")
    with pytest.raises(dataclasses.FrozenInstanceError):
        name.sid = "other"  # type: ignore[misc]


# --- builders --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        pytest.param(playlist_name(SID, "cnameagora"), "sid713476478245_cnameagora.m3u8", id="playlist"),
        pytest.param(
            playlist_name(SID, "cnameagora", uid="123", media="audio"),
            "sid713476478245_cnameagora__uid_s_123__uid_e_audio.m3u8",
            id="playlist-individual",
        ),
        pytest.param(
            slice_name(HEX_SID, "httpClient463224", T1),
            f"{HEX_SID}_httpClient463224_20190611073246073.ts",
            id="slice",
        ),
        pytest.param(
            slice_name(SID, "cnameagora", T0, uid="123", media="video"),
            "sid713476478245_cnameagora__uid_s_123__uid_e_video_20190920125142485.ts",
            id="slice-individual",
        ),
        pytest.param(
            slice_name(SID, "cnameagora", T0, uid="123", media="video", ext="webm"),
            "sid713476478245_cnameagora__uid_s_123__uid_e_video_20190920125142485.webm",
            id="slice-webm",
        ),
        pytest.param(
            mp4_name(SID, "cnameagora", index=2),
            "sid713476478245_cnameagora_2.mp4",
            id="mp4",
        ),
        pytest.param(
            mp4_name(SID, "cnameagora", index=0, uid="123", codec="h264"),
            "sid713476478245_cnameagora__uid_s_123__uid_e_0_h264.mp4",
            id="mp4-v2",
        ),
        pytest.param(
            playlist_name(SID, "cnameagora", backup=0),
            "bak0_sid713476478245_cnameagora.m3u8",
            id="playlist-failover",
        ),
        pytest.param(
            mp4_name(SID, "cnameagora", index=0, uid="123", media="audio"),
            "sid713476478245_cnameagora__uid_s_123__uid_e_audio_0.mp4",
            id="mp4-individual",
        ),
        pytest.param(report_name(SID, "cnameagora"), "sid713476478245_cnameagora.report.json", id="report"),
        pytest.param(
            report_name(SID, "cnameagora", uid="123", media="video"),
            "sid713476478245_cnameagora__uid_s_123__uid_e_video.report.json",
            id="report-individual",
        ),
    ],
)
def test_builders(built: str, expected: str) -> None:
    assert built == expected


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: playlist_name("a_b", "c"), id="playlist-bad-sid"),
        pytest.param(lambda: playlist_name(SID, "c/d"), id="playlist-bad-cname"),
        pytest.param(lambda: slice_name(SID, "c", T0, ext="webm"), id="composite-webm"),
        pytest.param(lambda: slice_name(SID, "c", T0, ext="m3u8"), id="slice-m3u8"),
        pytest.param(lambda: mp4_name(SID, "c", index=-1), id="mp4-negative-index"),
        pytest.param(lambda: report_name(SID, "c", uid="1"), id="report-uid-without-media"),
        pytest.param(lambda: report_name(SID, "c", uid="a/b", media="audio"), id="report-bad-uid"),
    ],
)
def test_builders_reject(build: object) -> None:
    with pytest.raises(NamingError):
        build()  # type: ignore[operator]


# --- small checks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("sid713476478245_cnameagora_1560238366_0.m3u8", True, id="snapshot"),
        pytest.param("sid713476478245_cnameagora_1560238366_12.m3u8", True, id="snapshot-index-12"),
        pytest.param("sid713476478245_cnameagora.m3u8", False, id="main-playlist"),
        pytest.param("sid713476478245_cnameagora_1560238366.m3u8", False, id="no-index"),
        pytest.param("sid713476478245_cnameagora_1560238366_0.ts", False, id="ts"),
        pytest.param("sid713476478245_cnameagora_15602a8366_0.m3u8", False, id="letter-in-tick"),
        pytest.param("sid713476478245_cnameagora__0.m3u8", False, id="empty-tick"),
        pytest.param("sid713476478245_cnameagora_1_2_3.m3u8", False, id="extra-part"),
        pytest.param("other_cnameagora_1560238366_0.m3u8", False, id="other-sid"),
        pytest.param("sid713476478245_cnameother_1560238366_0.m3u8", False, id="other-cname"),
        pytest.param("sid713476478245_cnameagora_1560238366_0.m3u8.tmp", False, id="suffix"),
    ],
)
def test_is_snapshot_playlist(name: str, expected: bool) -> None:
    assert is_snapshot_playlist(name, sid=SID, cname="cnameagora") is expected


@pytest.mark.parametrize(
    "cname",
    ["a", "httpClient463224", "room 1", "a_b", "100%", "a+b&c", "c" * 64, "!#$%&()+-:;<=.>?@[]^_{|}~,"],
)
def test_check_cname_accepts(cname: str) -> None:
    assert check_cname(cname) == cname


@pytest.mark.parametrize(
    "cname",
    [
        pytest.param("", id="empty"),
        pytest.param("c" * 65, id="65-bytes"),
        pytest.param("ä", id="non-ascii"),
        pytest.param("a/b", id="slash"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("a\x00", id="nul"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a*b", id="star"),
        pytest.param('a"b', id="double-quote"),
        pytest.param("x__uid_s_1", id="marker"),
        pytest.param("x__uid_s", id="marker-prefix"),
    ],
)
def test_check_cname_rejects(cname: str) -> None:
    with pytest.raises(NamingError):
        check_cname(cname)


@pytest.mark.parametrize(
    "sid", [pytest.param("", id="empty"), "a_b", "a/b", "a\\b", "a b", "a\x7fb", "a\u2028"]
)
def test_check_sid_rejects(sid: str) -> None:
    with pytest.raises(NamingError):
        check_sid(sid)


@pytest.mark.parametrize("uid", [pytest.param("", id="empty"), "1" * 256, "a/b", "ü", "a\nb"])
def test_check_uid_rejects(uid: str) -> None:
    with pytest.raises(NamingError):
        check_uid(uid)


# --- properties ------------------------------------------------------------------------------------------

# Fragments that sit near the parser's decision points, so generated text hits the hard cases often.
FRAGMENTS = ["_", "__", "__uid_s_", "__uid_e_", "__uid_s", "__uid_e", "uid", "_s_", "_e_"]
FRAGMENTS += ["audio", "video", "av", "20190920125142485", "0", "12", "."]
FRAGMENTS += [".m3u8", ".ts", ".webm", ".mp4", "sid713476478245"]
AGORA_CHARS = "".join(sorted(CNAME_CHARS))

agora_text = st.lists(st.sampled_from(FRAGMENTS) | st.sampled_from(AGORA_CHARS), max_size=12).map("".join)
sids = st.sampled_from([SID, HEX_SID]) | st.text(
    st.characters(exclude_categories=("C", "Z"), exclude_characters="_/\\"), min_size=1, max_size=20
)


def _passes(check: Callable[[str], str]) -> Callable[[str], bool]:
    """Turn a ``check_*`` function into a filter, so the generators accept exactly what the module accepts."""

    def ok(text: str) -> bool:
        try:
            check(text)
        except NamingError:
            return False
        return True

    return ok


cnames = (agora_text | st.text(AGORA_CHARS, max_size=64)).filter(_passes(check_cname))
uids = st.integers(0, 2**32 - 1).map(str) | (agora_text | st.text(AGORA_CHARS, max_size=255)).filter(
    _passes(check_uid)
)
utcs = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999), timezones=st.just(UTC)
)


@st.composite
def agora_names(draw: st.DrawFn) -> AgoraName:
    kind = draw(st.sampled_from(["playlist", "slice", "mp4"]))
    individual = draw(st.booleans())
    v2 = individual and draw(st.booleans())
    uid = draw(uids) if individual else None
    media = draw(st.sampled_from(["audio", "video", "av"])) if individual and not v2 else None
    codec = (
        draw(st.from_regex(r"[a-z0-9]{1,16}", fullmatch=True).filter(lambda c: c not in MEDIAS))
        if v2
        else None
    )
    ext = {"playlist": "m3u8", "mp4": "mp4"}.get(kind) or draw(
        st.sampled_from(["ts", "webm"] if individual and not v2 else ["ts"])
    )
    return AgoraName(
        kind=kind,  # type: ignore[arg-type]
        sid=draw(sids),
        cname=draw(cnames),
        uid=uid,
        media=media,  # type: ignore[arg-type]
        codec=codec,
        utc=draw(utcs) if kind == "slice" else None,
        index=draw(st.integers(0, MAX_INDEX)) if kind == "mp4" else None,
        ext=ext,
        backup=draw(st.none() | st.integers(0, 999)),
    )


@settings(database=None, max_examples=500)
@given(agora_names())
def test_parse_format_round_trip(name: AgoraName) -> None:
    text = format_name(name)
    assert parse_name(text) == name
    assert format_name(parse_name(text)) == text


@st.composite
def mutated_names(draw: st.DrawFn) -> str:
    """A valid name with one slice of it replaced by a fragment or an arbitrary character."""
    text = format_name(draw(agora_names()))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 3)))
    return text[:start] + draw(st.sampled_from(["", *FRAGMENTS]) | st.characters()) + text[end:]


name_like = st.builds(
    "{}_{}{}".format,
    st.sampled_from([SID, "a", "", "a b"]),
    st.lists(st.sampled_from(FRAGMENTS) | st.characters(), max_size=10).map("".join),
    st.sampled_from([".m3u8", ".ts", ".webm", ".mp4", ""]),
)


@settings(database=None, max_examples=1500)
@given(st.text() | name_like | mutated_names())
@example("sid_c__uid_s_1__uid_e_audio_99999999999999999.ts")
@example("s_c_" + "9" * 5000 + ".mp4")
@example("s_c__uid_s_1__uid_e_av_" + "1" * 5000 + ".mp4")
@example("s_\ud800.m3u8")
def test_parse_name_raises_only_naming_error_and_round_trips(text: str) -> None:
    try:
        parsed = parse_name(text)
    except NamingError:
        return
    assert format_name(parsed) == text


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sid1_room_0.m4a", ("sid1", "room", 0, "m4a")),
        ("sid1_my room_12.mp3", ("sid1", "my room", 12, "mp3")),
        ("sid1_a_b_3.aac", ("sid1", "a_b", 3, "aac")),
        ("sid1_room_03.m4a", None),
        ("sid1_room.m4a", None),
        ("sid1_room_0.wav", None),
        ("sid1_room_20190611073246073.ts", None),
        ("../sid1_room_0.m4a", None),
    ],
)
def test_mixed_audio_of_postponed_mixing(name, expected):
    from pipeline.model.naming import parse_mixed_audio

    found = parse_mixed_audio(name)
    assert (None if found is None else (found.sid, found.cname, found.index, found.ext)) == expected


def test_web_page_cnames_up_to_1024_bytes_are_read_from_names() -> None:
    cname = "w" * 1024  # a web page recording's cname is a label of up to 1024 bytes
    assert parse_name(f"sid713476478245_{cname}.m3u8").cname == cname
    with pytest.raises(NamingError, match="longer than 64 bytes"):
        check_cname("c" * 65)  # what a composite start request may give
