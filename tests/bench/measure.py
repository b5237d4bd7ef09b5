"""Running a command for the benchmark: its wall time and the peak memory of its whole process tree."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PAGE = os.sysconf("SC_PAGE_SIZE")
POLL_S = 0.01


@dataclass(frozen=True, slots=True)
class Measured:
    """One run: seconds of wall time and the peak summed RSS of the process and its descendants."""

    seconds: float
    peak_rss: int


def children_of() -> dict[int, list[int]]:
    """Every process's children, from ``/proc/<pid>/stat``."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def rss(pid: int) -> int:
    """Resident bytes of one process (0 once it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants right now."""
    tree = children_of()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss(pid)
        todo += tree.get(pid, [])
    return total


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, memory: bool = False) -> Measured:
    """Run ``argv`` to completion (it must succeed); with ``memory``, sample its process tree's RSS
    (the sampler costs CPU, so timings are taken without it)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), env=dict(env) if env is not None else None,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(POLL_S)

    sampler = threading.Thread(target=sample, daemon=True)
    if memory:
        sampler.start()
    _, stderr = proc.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    if memory:
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {stderr.decode(errors='replace')[-2000:]}")
    return Measured(seconds=elapsed, peak_rss=peak)


def run_all(steps: Sequence[Sequence[str]], *, env: Mapping[str, str] | None = None) -> Measured:
    """Run commands one after another; their summed time and the highest peak among them."""
    results = [run(argv, env=env) for argv in steps]
    return Measured(seconds=sum(r.seconds for r in results), peak_rss=max(r.peak_rss for r in results))
