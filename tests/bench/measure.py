"""Running a command for the benchmark: its wall time, the CPU time and peak memory of its process tree.

CPU time is the user + system time ``os.wait4`` reports for the command: its own and that of every
descendant it reaped (recpipe's and yt-dlp's ffmpeg), and nothing of the long-lived helpers (the S3
server, the link proxy), which are this process's children, not the command's. Their CPU time during a
command is read from ``/proc/<pid>/stat`` before and after it (``watch``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.01
STDERR_TAIL = 2000


class CommandError(RuntimeError):
    """A measured command exited with an error; the message ends with its stderr's last line."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Measured:
    """One run: wall seconds, CPU seconds (user + sys) of the process tree, its peak summed RSS (bytes,
    when sampled), the CPU seconds each watched helper process used meanwhile, and when it started and
    ended (epoch seconds, to find its requests in the S3 server's timeline)."""

    seconds: float
    cpu: float
    peak_rss: int = 0
    watched: Mapping[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0


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


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (its own threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    memory: bool = False,
    watch: Mapping[str, int] | None = None,
) -> Measured:
    """Run ``argv`` to completion (else ``CommandError``); with ``memory``, sample its process tree's RSS
    (the sampler costs CPU, so timings are taken without it).

    :param watch: long-lived processes (name: pid) whose CPU seconds during the run are reported.
    """
    watch = watch or {}
    before = {name: process_cpu(pid) for name, pid in watch.items()}
    with tempfile.TemporaryFile() as stderr:
        started_at, started = time.time(), time.perf_counter()
        proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else None,
                                stdout=subprocess.DEVNULL, stderr=stderr)  # fmt: skip
        sampler = Sampler(proc.pid) if memory else None
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed, ended_at = time.perf_counter() - started, time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = sampler.stop() if sampler is not None else 0
        if proc.returncode != 0:
            stderr.seek(max(0, stderr.tell() - STDERR_TAIL))
            tail = stderr.read().decode(errors="replace").strip().splitlines()
            raise CommandError(f"{Path(argv[0]).name} exited {proc.returncode}: {(tail or [''])[-1]}")
    used = {name: process_cpu(pid) - before[name] for name, pid in watch.items()}
    return Measured(seconds=elapsed, cpu=usage.ru_utime + usage.ru_stime, peak_rss=peak, watched=used,
                    started_at=started_at, ended_at=ended_at)  # fmt: skip


class Sampler:
    """Samples the summed RSS of a process tree on a thread until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.done.wait(POLL_S)

    def stop(self) -> int:
        """Stop sampling; the peak, bytes."""
        self.done.set()
        self.thread.join()
        return self.peak


def run_steps(
    steps: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str] | None = None,
    watch: Mapping[str, int] | None = None,
) -> list[Measured]:
    """Run commands one after another (as ``run``); one ``Measured`` for each."""
    return [run(argv, env=env, watch=watch) for argv in steps]


def total(parts: Sequence[Measured]) -> Measured:
    """Commands run one after another as one: summed times, the highest peak."""
    watched: dict[str, float] = {}
    for part in parts:
        for name, cpu in part.watched.items():
            watched[name] = watched.get(name, 0.0) + cpu
    return Measured(
        seconds=sum(p.seconds for p in parts),
        cpu=sum(p.cpu for p in parts),
        peak_rss=max((p.peak_rss for p in parts), default=0),
        watched=watched,
        started_at=min((p.started_at for p in parts), default=0.0),
        ended_at=max((p.ended_at for p in parts), default=0.0),
    )
