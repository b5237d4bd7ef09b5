"""Shared fixtures for end-to-end tests: the ffmpeg binary and one small recording per defect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.samples.composite import DEFECTS, SampleSet, write_sample


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> dict[str | None, Path]:
    """One small recording per defect (and a clean one, key None): 6 s in 2 s slices, with a profile."""
    made: dict[str | None, Path] = {}
    for defect in [None, *DEFECTS]:
        root = tmp_path_factory.mktemp(defect or "clean")
        rec = write_sample(root / "recordings", ffmpeg=ffmpeg_exe, seconds=6, slice_seconds=2, defect=defect)
        (root / "start.json").write_text(json.dumps(rec.profile))
        made[defect] = root
    return made


@pytest.fixture
def root(made: tuple[Path, object], tmp_path: Path) -> Path:
    """A private copy of the module's ``made`` recording (its root directory, holding ``recordings/``
    and ``start.json``), to change freely."""
    copy = tmp_path / "bucket"
    shutil.copytree(made[0], copy)
    return copy


def with_profile(root: Path, sample: SampleSet) -> tuple[Path, SampleSet]:
    """``(root, sample)`` once the sample's start request is written to ``root/start.json``."""
    (root / "start.json").write_text(json.dumps(sample.profile))
    return root, sample
