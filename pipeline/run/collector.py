"""Python's cyclic garbage collector while a process starts.

Starting a run builds objects that live as long as the process — modules, classes, functions, boto3's
service model and client — and no garbage cycles worth finding. The collector still walked them
again and again: an S3 → local run of an hour made about 170 collections, all but a few in its first
second (one full collection of 0.028 s among them), 0.05–0.07 cpu-s on the way to the first fetch.

- ``settle`` (once, when the command starts): what the imports built moves to the collector's permanent
  generation (``gc.freeze``), which no later collection walks. It is only ever freed with the process.
- ``paused`` (a run's setup: opening the stores, finding the recording): no collection until it ends.
  Where the process exists for that one run (``recpipe process``), what the setup built is then
  settled too. A worker or Lambda process runs many jobs, and each job's objects must stay
  collectable: there it is only paused.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def settle() -> None:
    """Exempt every object that exists now from later collections (for what lives as long as the process)."""
    gc.freeze()


@contextlib.contextmanager
def paused(*, settle_after: bool = False) -> Iterator[None]:
    """No cyclic collection inside the block (reference counting still frees); the collector is enabled
    again afterwards if it was before, with everything made meanwhile settled if ``settle_after``.
    Other threads' blocks may overlap: the first one out enables it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if settle_after:
            settle()
        if was_enabled:
            gc.enable()
