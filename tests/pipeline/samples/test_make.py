"""``make_sample``: samples written with their profile, as ``recpipe sample`` does, without the CLI."""

from __future__ import annotations

import json

import pytest

from pipeline.model.exceptions import ConfigError
from pipeline.samples.composite import SampleRecording, SampleSet
from pipeline.samples.make import describe, make_sample

pytestmark = pytest.mark.ffmpeg


def test_a_composite_sample_and_its_profile(tmp_path, ffmpeg_exe):
    made = make_sample("composite", tmp_path, ffmpeg=ffmpeg_exe, prefix="a/b", seconds=4, slice_seconds=2)
    assert isinstance(made.sample, SampleRecording)
    assert made.sample.playlist.parent == tmp_path / "a" / "b"
    assert made.profile == tmp_path / "start_request.json"
    profile = json.loads(made.profile.read_text())
    assert profile["clientRequest"]["storageConfig"]["fileNamePrefix"] == ["a", "b"]
    first, second = describe(made)
    assert first.startswith("wrote 2 slices (")
    assert first.endswith(f"4.0 s) and {made.sample.playlist}")
    assert second == f"profile: {made.profile}"
    assert made.held is None
    with pytest.raises(ConfigError):  # a sample is never written over another without force
        make_sample("composite", tmp_path, ffmpeg=ffmpeg_exe, prefix="a/b", seconds=4, slice_seconds=2)


def test_a_backuped_sample_holds_its_late_slices_beside_it(tmp_path, ffmpeg_exe):
    where = tmp_path / "bk"
    made = make_sample("backuped", where, ffmpeg=ffmpeg_exe)
    assert isinstance(made.sample, SampleSet)
    assert made.held == tmp_path / "bk-late"
    held = sorted(p.name for p in made.held.iterdir())
    assert held
    assert all(not (where / "recordings" / name).exists() for name in held)
    again = make_sample("backuped", where, ffmpeg=ffmpeg_exe, force=True)
    assert sorted(p.name for p in again.held.iterdir()) == held
    assert describe(again)[0].startswith(f"wrote {len(again.sample.playlists)} playlists")
