"""``recpipe sample``: one call that writes a sample of any kind and its start-request profile.

The slices and playlists go to ``directory/prefix/`` and the start request that would have produced
them to ``directory/start_request.json``, its ``fileNamePrefix`` set to ``prefix``, ready for
``recpipe process directory --profile directory/start_request.json``. A backuped sample's slices
that Agora's backup cloud would upload late are held in ``<directory>-late/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.samples.composite import SampleRecording, SampleSet, write_sample
from pipeline.samples.individual import write_individual_sample
from pipeline.samples.raw import write_raw_sample
from pipeline.samples.recovery import write_backuped_sample, write_failover_sample

SampleMode = Literal["composite", "individual", "raw", "failover", "backuped"]
SAMPLE_MODES: tuple[SampleMode, ...] = ("composite", "individual", "raw", "failover", "backuped")


@dataclass(frozen=True, kw_only=True, slots=True)
class Made:
    """What ``make_sample`` wrote."""

    sample: SampleRecording | SampleSet
    profile: Path
    """The start-request profile beside it."""
    held: Path | None = None
    """Where a backuped sample's late slices wait (``None`` for other samples)."""


def make_sample(
    mode: SampleMode,
    directory: Path,
    *,
    ffmpeg: str,
    prefix: str = "recordings",
    cname: str = "demo-room",
    seconds: int = 45,
    slice_seconds: int = 15,
    defect: str | None = None,
    extinf_comma: bool = False,
    force: bool = False,
) -> Made:
    """Write a ``mode`` sample into ``directory/prefix`` and its profile beside it.

    ``seconds``, ``slice_seconds``, ``defect`` and ``extinf_comma`` shape composite samples only (the
    other kinds have the fixed shape their tests rely on)."""
    where = directory / prefix
    held = None
    sample: SampleRecording | SampleSet
    if mode == "composite":
        sample = write_sample(
            where,
            ffmpeg=ffmpeg,
            seconds=seconds,
            slice_seconds=slice_seconds,
            cname=cname,
            defect=defect,
            force=force,
            extinf_comma=extinf_comma,
        )
    elif mode == "individual":
        sample = write_individual_sample(where, ffmpeg=ffmpeg, cname=cname, force=force)
    elif mode == "raw":
        sample = write_raw_sample(where, ffmpeg=ffmpeg, cname=cname, force=force)
    elif mode == "failover":
        sample = write_failover_sample(where, ffmpeg=ffmpeg, cname=cname, force=force)
    else:
        held = directory.parent / f"{directory.name}-late"
        if held.exists() and force:
            shutil.rmtree(held)
        sample = write_backuped_sample(where, ffmpeg=ffmpeg, cname=cname, force=force, held=held)
    profile = write_sample_profile(sample.profile, directory=directory, prefix=prefix)
    return Made(sample=sample, profile=profile, held=held)


def write_sample_profile(made: Mapping[str, object], *, directory: Path, prefix: str) -> Path:
    """Write the sample's start request to ``directory/start_request.json``, its ``fileNamePrefix``
    set to ``prefix``'s directories."""
    profile = json.loads(json.dumps(made))
    profile["clientRequest"]["storageConfig"]["fileNamePrefix"] = [p for p in prefix.split("/") if p]
    path = directory / "start_request.json"
    path.write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
    return path


def describe(made: Made) -> list[str]:
    """What was written, for the terminal."""
    sample = made.sample
    if isinstance(sample, SampleRecording):
        size = sum(p.stat().st_size for p in sample.slices if p.exists())
        what = f"{len(sample.slices)} slices ({size:,} bytes, {sample.seconds:.1f} s) and {sample.playlist}"
    else:
        what = f"{len(sample.playlists)} playlists and {len(sample.slices)} slices in {sample.directory}"
    return [f"wrote {what}", f"profile: {made.profile}"]
