"""Progress reporting for long work: a small protocol, a silent sink and a terminal bar (``rich``).

``rich`` is imported when a bar is made: runs without a terminal (batch jobs, workers, ``--quiet``) do
not load it (40 ms)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Receives progress of one task at a time (fetch, remux ...)."""

    def start(self, task: str, *, total: int, unit: str) -> None:
        """A task begins; ``total`` units are expected."""
        ...

    def advance(self, amount: int = 1) -> None:
        """``amount`` more units are done."""
        ...

    def finish(self) -> None:
        """The current task ended (successfully or not)."""
        ...


class NullProgress:
    """Prints nothing: for --quiet, --json and non-terminal runs."""

    def start(self, task: str, *, total: int, unit: str) -> None:
        """Ignore."""

    def advance(self, amount: int = 1) -> None:
        """Ignore."""

    def finish(self) -> None:
        """Ignore."""


class TerminalProgress:
    """A progress bar on a terminal (``rich``): the task, a bar, the share done, bytes done of all, the
    rate and the time left; the elapsed time when it ends. Only for a terminal: the CLI gives pipes and
    ``--quiet``/``--json`` runs ``NullProgress``."""

    def __init__(
        self, stream: TextIO, *, force_terminal: bool | None = None, width: int | None = None
    ) -> None:
        from rich.console import Console

        self._console = Console(
            file=stream, force_terminal=force_terminal, width=width, stderr=stream is sys.stderr
        )
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def start(self, task: str, *, total: int, unit: str) -> None:
        """Begin a bar for ``task``."""
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        self.finish()
        amount = DownloadColumn() if unit == "B" else MofNCompleteColumn()
        rate = TransferSpeedColumn() if unit == "B" else TextColumn("")
        self._bar = RichProgress(
            TextColumn("{task.description:<11}"), BarColumn(), TaskProgressColumn(), amount, rate,
            TimeRemainingColumn(), TimeElapsedColumn(), console=self._console, transient=False,
        )  # fmt: skip
        self._bar.start()
        self._task = self._bar.add_task(task, total=total or None)

    def advance(self, amount: int = 1) -> None:
        """``amount`` more units are done."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=amount)

    def finish(self) -> None:
        """End the bar (it stays on screen, with the elapsed time)."""
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._task = None, None
