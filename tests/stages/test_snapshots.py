"""Backup uploads: which of a recording's playlists is processed, or how they are merged (pure)."""

from __future__ import annotations

import pytest

from pipeline.model.exceptions import PlaylistError
from pipeline.model.job import Recording
from pipeline.model.naming import split_snapshot_name
from stages.fetch import build_segments, playlist_findings, slice_utc
from stages.playlist import Playlist, parse_playlist
from stages.snapshots import (
    Choice,
    choose_playlist,
    snapshot_findings,
)
from tests.builders import CNAME, SID, make_playlist, slice_uri

REC = Recording(sid=SID, cname=CNAME, directory="rec/", playlist_key=f"rec/{SID}_{CNAME}.m3u8")
MAIN = f"rec/{SID}_{CNAME}.m3u8"
OLD = f"rec/{SID}_{CNAME}_1768469400_0.m3u8"
NEW = f"rec/{SID}_{CNAME}_1768469400_1.m3u8"
NEWER = f"rec/{SID}_{CNAME}_1768469500_0.m3u8"


def utc_of(uri: str):
    return slice_utc(uri, recording=REC)


def pl(count: int = 6, *, uris: dict[int, str] | None = None, **kwargs) -> Playlist:
    """A playlist of slices 0..count-1 named 15 s apart (whatever their EXTINF says)."""
    names = {n: slice_uri(n) for n in range(count)} | (uris or {})
    return parse_playlist(make_playlist(count=count, uris=names, **kwargs))


def keep(*numbers: int, count: int = 6, **kwargs) -> Playlist:
    """A playlist listing only slices ``numbers`` of a ``count``-slice recording."""
    return pl(count, drop=set(range(count)) - set(numbers), **kwargs)


def choose(main: Playlist | None, **snapshots: Playlist) -> Choice:
    keys = {"old": OLD, "new": NEW, "newer": NEWER}
    return choose_playlist(
        (MAIN, main) if main is not None else None,
        {keys[k]: p for k, p in snapshots.items()},
        utc_of=utc_of,
    )


def listed(choice: Choice) -> list[str]:
    return [e.uri for e in choice.playlist.entries]


ALL = [slice_uri(n) for n in range(6)]


# --- picking -----------------------------------------------------------------------------------------


def test_main_playlist_listing_everything_is_picked_as_it_is():
    main = pl()
    choice = choose(main, old=keep(0, 1, endlist=False), new=keep(2, 3, 4))
    assert (choice.how, choice.used, choice.playlist) == ("picked", (MAIN,), main)
    assert choice.snapshots == (OLD, NEW)
    assert choice.only_in_snapshots == 0
    assert choice.conflicts == ()


def test_newest_complete_snapshot_is_picked_when_the_main_playlist_lacks_slices():
    newest = pl()
    choice = choose(keep(0, 1, 2), old=pl(), newer=newest, new=keep(0, 1))
    assert (choice.how, choice.used) == ("picked", (NEWER,))
    assert choice.playlist is newest
    assert choice.only_in_snapshots == 3
    assert choice.snapshots == (OLD, NEWER, NEW)  # oldest to newest: by index, then tick


def test_snapshot_with_endlist_is_picked_over_a_main_playlist_still_without_one():
    """The main playlist's last upload went to backup: the snapshot is the finished playlist."""
    choice = choose(pl(endlist=False), old=pl())
    assert (choice.how, choice.used, choice.playlist.endlist) == ("picked", (OLD,), True)
    assert choice.endlists == (OLD,)
    assert "#EXT-X-ENDLIST from" in snapshot_findings(choice)[0].detail


def test_a_recording_without_snapshots_is_its_playlist():
    main = pl()
    choice = choose(main)
    assert (choice.how, choice.used, choice.playlist) == ("picked", (MAIN,), main)
    assert snapshot_findings(choice) == ()


def test_without_a_main_playlist_a_complete_snapshot_is_picked():
    choice = choose(None, old=keep(0, 1, 2, endlist=False), new=pl())
    assert (choice.how, choice.used, choice.main) == ("picked", (NEW,), None)
    assert choice.only_in_snapshots == 6
    assert "there is no main playlist" in snapshot_findings(choice)[0].detail


def test_unfinished_everywhere_stays_unfinished():
    choice = choose(keep(0, 1, endlist=False), old=pl(endlist=False))
    assert (choice.how, choice.used, choice.playlist.endlist) == ("picked", (OLD,), False)


def test_duplicates_in_a_picked_playlist_stay_for_verify_to_report():
    doubled = parse_playlist(make_playlist(count=3, uris={2: slice_uri(1)}))
    choice = choose(doubled, old=keep(0, 1, count=3))
    assert choice.how == "picked"
    assert listed(choice) == [slice_uri(0), slice_uri(1), slice_uri(1)]


# --- merging -----------------------------------------------------------------------------------------


def test_entries_only_in_snapshots_are_merged_in_time_order():
    """The upload failed mid-recording: the main playlist lacks the middle, a snapshot has it."""
    choice = choose(keep(0, 1, 4, 5), old=keep(1, 2, 3, endlist=False))
    assert (choice.how, choice.used) == ("merged", (MAIN, OLD))
    assert listed(choice) == ALL
    assert [(e.index, e.num) for e in choice.playlist.entries] == [(i, i) for i in range(6)]
    assert choice.playlist.endlist
    assert choice.only_in_snapshots == 2
    assert choice.playlist.duration == pytest.approx(90.0)


def test_merge_orders_by_the_names_times_not_by_the_playlists():
    choice = choose(keep(4, 5), old=keep(0, 1, endlist=False), new=keep(2, 3, endlist=False))
    assert listed(choice) == ALL
    assert choice.used == (MAIN, OLD, NEW)


def test_overlapping_playlists_list_each_slice_once():
    doubled = parse_playlist(make_playlist(count=3, uris={2: slice_uri(1)}))  # slices 0, 1, 1
    choice = choose(doubled, old=keep(1, 2, 3, 4, endlist=False))
    assert choice.how == "merged"
    assert listed(choice) == [slice_uri(n) for n in range(5)]


def test_merge_keeps_each_entrys_discontinuity_and_the_widest_header():
    main = parse_playlist(make_playlist(count=4, drop={2}, first_seq=7, target=15))
    snapshot = parse_playlist(
        make_playlist(count=4, drop={0, 1}, discontinuity_at={2}, first_seq=3, target=20)
    )
    choice = choose(main, old=snapshot)
    assert [e.discontinuity for e in choice.playlist.entries] == [False, False, True, False]
    assert (choice.playlist.media_sequence, choice.playlist.target_duration) == (3, 20.0)
    assert [e.num for e in choice.playlist.entries] == [3, 4, 5, 6]


def test_disagreeing_extinfs_are_reported_and_the_preferred_value_is_used():
    main = keep(0, 1, count=3)
    snapshot = keep(1, 2, count=3, duration=12.5, endlist=False)
    choice = choose(main, old=snapshot)
    assert choice.how == "merged"
    [conflict] = choice.conflicts
    assert (conflict.uri, conflict.used_s, conflict.used_key, conflict.other_s, conflict.other_key) == (
        slice_uri(1),
        15.0,
        MAIN,
        12.5,
        OLD,
    )
    assert [e.duration for e in choice.playlist.entries] == [15.0, 15.0, 12.5]
    info, warning = snapshot_findings(choice)
    assert (info.code, info.severity) == ("PLAYLIST_SNAPSHOTS", "info")
    assert (warning.code, warning.severity, warning.segment, warning.entry) == (
        "PLAYLIST_SNAPSHOTS",
        "warning",
        slice_uri(1),
        1,
    )
    assert "15.000 s" in warning.detail
    assert "12.500 s" in warning.detail


def test_a_picked_playlist_reports_disagreements_with_the_others_too():
    choice = choose(pl(count=2), old=pl(count=2, duration=14.0))
    assert choice.how == "picked"
    assert [(c.uri, c.used_s, c.other_s) for c in choice.conflicts] == [
        (slice_uri(0), 15.0, 14.0),
        (slice_uri(1), 15.0, 14.0),
    ]


def test_rounding_is_not_a_disagreement():
    text = make_playlist(count=2).replace("#EXTINF:15.000000,", "#EXTINF:15,")
    assert choose(pl(count=2), old=parse_playlist(text)).conflicts == ()


def test_merge_is_impossible_when_an_entry_has_no_place():
    foreign = keep(3, 4, 5, uris={3: "intro.ts"}, endlist=False)
    with pytest.raises(PlaylistError, match=r"intro\.ts.*carries no time of this recording"):
        choose(keep(0, 1, 2), old=foreign)


def test_foreign_names_are_fine_when_no_merge_is_needed():
    main = pl(uris={3: "intro.ts"})
    assert choose(main, old=keep(0, 1)).how == "picked"


def test_unsafe_names_are_kept_last_so_they_are_reported_and_nothing_is_fetched():
    hostile = keep(2, 3, uris={3: "../../etc/passwd"}, endlist=False)
    choice = choose(keep(0, 1), old=hostile)
    assert listed(choice)[-1] == "../../etc/passwd"
    segments = build_segments(choice.playlist, recording=REC)
    codes = [f.code for f in playlist_findings(choice.playlist, segments)]
    assert codes == ["UNSAFE_URI"]


def test_merge_respects_the_entry_limit():
    with pytest.raises(PlaylistError, match="over the limit of 4"):
        choose_playlist((MAIN, keep(0, 1, 2)), {OLD: keep(3, 4)}, utc_of=utc_of, max_entries=4)


def test_no_playlist_at_all_is_an_error():
    with pytest.raises(PlaylistError, match="no playlist"):
        choose(None)


# --- the finding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("main", "snapshots", "words"),
    [
        pytest.param(pl(), {"old": keep(0)}, ["the main playlist", "0 of 6 entries"], id="picked-main"),
        pytest.param(keep(0), {"new": pl()}, ["snapshot playlist", "_1.m3u8", "5 of 6 entries"], id="picked"),
        pytest.param(
            keep(0, 5), {"old": keep(1, 2), "new": keep(3, 4)}, ["3 playlists merged", "4 of 6"], id="merged"
        ),
    ],
)
def test_the_info_finding_says_what_was_used(main, snapshots, words):
    [finding] = snapshot_findings(choose(main, **snapshots))
    assert (finding.code, finding.severity, finding.entry) == ("PLAYLIST_SNAPSHOTS", "info", None)
    for word in words:
        assert word in finding.detail


# --- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        pytest.param(f"{SID}_room_1732500000123_0.m3u8", ("room", 1732500000123, 0), id="long-tick"),
        pytest.param(
            f"{SID}_my_room_1732500000_12.m3u8", ("my_room", 1732500000, 12), id="cname-with-underscore"
        ),
        pytest.param(f"{SID}_room_2024_1.m3u8", ("room", 2024, 1), id="short-tick"),
        pytest.param(f"{SID}_room.m3u8", None, id="main"),
        pytest.param(f"{SID}_room_1732500000123.m3u8", None, id="no-index"),
        pytest.param(f"{SID}__1732500000123_0.m3u8", None, id="no-cname"),
        pytest.param(f"{SID}_room_{'9' * 30}_0.m3u8", None, id="huge-tick"),
        pytest.param(f"{SID}_room_1732500000123_0.ts", None, id="slice"),
        pytest.param(f"{SID}_r/x_1732500000123_0.m3u8", None, id="separator"),
    ],
)
def test_snapshot_names(name, parts):
    found = split_snapshot_name(name)
    assert (None if found is None else (found.cname, found.tick, found.index)) == parts
    if found is not None:
        assert found.sid == SID


@pytest.mark.parametrize(
    ("name", "parent", "tick", "index"),
    [
        pytest.param(
            "sid713476478245_cnameagora__uid_s_123__uid_e_video_22194679897_3.m3u8",
            "sid713476478245_cnameagora__uid_s_123__uid_e_video.m3u8",
            22194679897,
            3,
            id="agoras-individual-example",
        ),
        pytest.param(
            f"{SID}_room__uid_s_7__uid_e_h264_5_0.m3u8",
            f"{SID}_room__uid_s_7__uid_e_h264.m3u8",
            5,
            0,
            id="v2",
        ),
        pytest.param(f"bak0_{SID}_room_77_2.m3u8", f"bak0_{SID}_room.m3u8", 77, 2, id="failover-set"),
    ],
)
def test_snapshots_of_every_playlist_kind(name, parent, tick, index):
    from pipeline.model.naming import format_name

    found = split_snapshot_name(name)
    assert found is not None
    assert (format_name(found.parent), found.tick, found.index) == (parent, tick, index)
