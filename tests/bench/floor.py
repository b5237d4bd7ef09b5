"""The floor of a local run: what ``recpipe process`` must do on local files, with nothing else.

    python -m tests.bench.floor RECORDING_DIR OUT_DIR      (ffmpeg: $RECPIPE_FFMPEG)

``make bench`` times this program beside ``recpipe process`` and bare ``ffmpeg -c copy`` on the same
files (``local_floor``, ``vs_local_floor``). It does, one after another, only what SPEC.md asks of every run
and bare ffmpeg does not do:

- start Python and import what a ``recpipe`` run imports;
- feed the slices, in playlist order, to recpipe's ffmpeg through a pipe (SPEC: ffmpeg only reads what
  recpipe gives it, never the vendor's playlist or files recpipe did not write), while the fragments
  are read along as recpipe reads them;
- publish the MP4 moov-first, durable (on disk before it is named) and hashed (the report's ``sha256``).

No verification, no timeline, no lease, no report: the difference between recpipe and this program is
what those cost on the run's critical path. Bare ffmpeg reads the files itself and writes its MP4 into
the page cache, unhashed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def slices_of(playlist: Path) -> list[Path]:
    """The playlist's slices, in order (its URI lines, beside it)."""
    lines = playlist.read_text().splitlines()
    return [playlist.with_name(line.strip()) for line in lines if line.strip() and not line.startswith("#")]


def main(argv: list[str]) -> int:
    directory, out = Path(argv[0]), Path(argv[1])
    import pipeline.cli  # noqa: F401 - the imports of a recpipe run are part of the floor
    from stages.ffmpeg import FfmpegProcess, find_ffmpeg, remux_argv
    from stages.follow import Following
    from stages.media.faststart import moov_first

    started = time.perf_counter()
    [playlist] = directory.glob("*.m3u8")
    part = out / "floor.mp4.part"
    proc = FfmpegProcess(remux_argv(find_ffmpeg(os.environ), output=part))
    follow = Following(part)
    follow.start()
    for path in slices_of(playlist):
        proc.write(path.read_bytes())
    proc.close()
    follow.stop()
    sha256 = moov_first(part, out / "floor.mp4", layout=follow.layout(), sync=True)
    part.unlink()
    print(f"{sha256} {time.perf_counter() - started:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
