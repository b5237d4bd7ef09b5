"""The benchmark's results: a ``name: value`` line each with its target and verdict, runs of each side
kept apart from the ones that failed, and the closing summary."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.bench.measure import Measured

log = logging.getLogger(__name__)

REASON_CHARS = 300


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    """One comparison: its value (``None`` if it could not be measured, ``error`` says why), its target
    (``None``: a reference line) and the absolute numbers behind it."""

    name: str
    value: float | None
    target: float | None
    detail: str
    error: str | None = None

    @property
    def verdict(self) -> str:
        """``ok``, ``MISSED``, ``ERROR`` or ``reference``."""
        if self.error is not None or self.value is None:
            return "ERROR"
        if self.target is None:
            return "reference"
        return "ok" if self.value <= self.target else "MISSED"

    def line(self) -> str:
        """``name: value    (target ≤ X, ok|MISSED; detail)``, or the reference or error form."""
        goal = "reference, no target" if self.target is None else f"target ≤ {self.target:g}"
        if self.verdict == "ERROR":
            verdict = "no value" if self.target is None else "MISSED"
            return f"{self.name}: ERROR    ({goal}, {verdict}; {self.error})"
        value = f"{self.value:.2f}" if self.value is not None and self.value < 100 else f"{self.value:.0f}"
        if self.target is None:
            return f"{self.name}: {value}    ({goal}; {self.detail})"
        return f"{self.name}: {value}    ({goal}, {self.verdict}; {self.detail})"


def show(result: Result) -> Result:
    """Print ``result``'s line now (a long benchmark shows its progress) and return it."""
    print(result.line(), flush=True)
    return result


def reason(err: BaseException) -> str:
    """One line saying why a measurement failed."""
    text = " ".join(str(err).split()) or "(no message)"
    text = f"{type(err).__name__}: {text}"
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


class Trials:
    """The runs of each side of a set of comparisons. A side whose run raised is not run again; the
    comparisons that need it become ``ERROR`` results with the reason."""

    def __init__(self) -> None:
        self.runs: dict[str, list[Measured]] = {}
        self.errors: dict[str, str] = {}

    def run(self, sides: Sequence[str], measure: Callable[[], Sequence[Measured]]) -> None:
        """Run ``measure`` once; it returns one ``Measured`` for each of ``sides``."""
        if any(side in self.errors for side in sides):
            return
        try:
            measured = measure()
        except Exception as err:  # any failure is reported on the comparisons' lines; the rest still run
            log.debug("%s failed", sides, exc_info=True)
            print(f"  {sides[0]} failed: {reason(err)}", flush=True)
            self.errors.update(dict.fromkeys(sides, reason(err)))
            return
        for side, one in zip(sides, measured, strict=True):
            self.runs.setdefault(side, []).append(one)

    def of(self, side: str) -> list[Measured]:
        """``side``'s runs (``LookupError`` with the reason if it failed or never ran)."""
        if side in self.errors or side not in self.runs:
            raise LookupError(f"{side}: {self.errors.get(side, 'not measured')}")
        return self.runs[side]

    def median(self, side: str, metric: Callable[[Measured], float]) -> float:
        """The median of ``metric`` over ``side``'s runs (``LookupError`` with the reason if it failed)."""
        return statistics.median(metric(one) for one in self.of(side))

    def count(self, side: str) -> int:
        return len(self.runs.get(side, []))


def summary(results: Sequence[Result], *, seconds: float) -> list[str]:
    """The closing lines: targets met, missed, errors, and how long the benchmark took."""
    targets = [r for r in results if r.target is not None]
    references = [r for r in results if r.target is None]
    names = {verdict: [r.name for r in results if r.verdict == verdict] for verdict in ("MISSED", "ERROR")}
    met = sum(r.verdict == "ok" for r in targets)
    lines = [
        f"summary: {met} of {len(targets)} targets met, {len(names['MISSED'])} missed, "
        f"{sum(r.verdict == 'ERROR' for r in targets)} could not be measured (ERROR); "
        f"{len(references)} reference lines, {sum(r.verdict == 'ERROR' for r in references)} of them ERROR",
    ]
    if names["MISSED"]:
        lines.append(f"missed: {', '.join(names['MISSED'])}")
    if names["ERROR"]:
        lines.append(f"errors: {', '.join(names['ERROR'])}")
    lines.append(f"bench took {seconds:.0f} s ({seconds / 60:.1f} min)")
    return lines


def failed(results: Sequence[Result]) -> bool:
    """Whether any target was missed or any comparison could not be measured."""
    return any(r.verdict in ("MISSED", "ERROR") for r in results)
