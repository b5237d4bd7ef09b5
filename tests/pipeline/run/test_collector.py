"""The garbage collector while a process starts (pipeline.run.collector), and where a run uses it."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline import cli
from pipeline.model.config import PipelineConfig
from pipeline.run import app, collector
from pipeline.run.app import Request, run

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "recordings"


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    """Each test leaves the collector enabled (``tests/conftest.py`` unfreezes what it froze)."""
    assert gc.isenabled()
    yield
    gc.enable()


def collections_during(block: Any) -> list[int]:
    """The generations collected while ``block()`` runs."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        block()
    finally:
        gc.callbacks.remove(note)
    return seen


def tracked(obj: object) -> bool:
    """Whether ``obj`` is in a generation the collector walks (not frozen)."""
    return any(o is obj for o in gc.get_objects())


def cycles(count: int) -> None:
    for _ in range(count):
        a: list[object] = []
        a.append(a)


def test_nothing_is_collected_while_paused_and_the_collector_runs_again_after() -> None:
    work = 10 * gc.get_threshold()[0]  # cycles enough for ten young collections
    with collector.paused():
        assert not gc.isenabled()
        assert collections_during(lambda: cycles(work)) == []
    assert gc.isenabled()
    assert collections_during(lambda: cycles(work))  # the same work, unpaused


def test_an_error_in_the_block_still_enables_the_collector() -> None:
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("setup failed")
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    with collector.paused():
        pass
    assert not gc.isenabled()


def test_only_a_settled_pause_exempts_what_it_made() -> None:
    with collector.paused():
        kept: list[object] = []
    assert tracked(kept)
    with collector.paused(settle_after=True):
        settled: list[object] = []
    assert not tracked(settled)
    assert gc.get_freeze_count() > 0


def test_a_run_in_a_longer_process_pauses_but_freezes_nothing(tmp_path: Path, monkeypatch) -> None:
    """Lambda runs jobs in its own process (``run_in_process``): each job's objects stay collectable."""
    recording = shutil.copytree(SAMPLE, tmp_path / "rec")
    collecting: list[bool] = []

    def open_source(*args: Any, **kwargs: Any) -> Any:
        collecting.append(gc.isenabled())
        return real_open_source(*args, **kwargs)

    real_open_source = app.open_source
    monkeypatch.setattr(app, "open_source", open_source)
    before = gc.get_freeze_count()
    result = run(Request(location=str(recording), dry_run=True), config=PipelineConfig(), environ={})
    assert result.job.status == "ok"
    assert collecting == [False]  # paused while the stores open
    assert gc.get_freeze_count() == before
    assert gc.isenabled()


def test_the_command_line_settles_its_run_setup(tmp_path: Path) -> None:
    recording = shutil.copytree(SAMPLE, tmp_path / "rec")
    before = gc.get_freeze_count()
    outcome = CliRunner().invoke(cli.main, ["verify", str(recording), "--quiet"])
    assert outcome.exit_code == 0, outcome.output
    assert gc.get_freeze_count() > before
    assert gc.isenabled()


def test_the_recpipe_program_settles_its_imports() -> None:
    """``run_main`` (the installed ``recpipe``) freezes what the imports built before the command runs."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count()))\n"
        "from pipeline.cli import run_main\n"
        "sys.argv = ['recpipe', '--version']\n"
        "run_main()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[3])  # fmt: skip
    assert done.returncode == 0, done.stderr
    frozen = int(done.stdout.split("frozen ")[1])
    assert frozen > 10_000  # the modules, classes and functions of the command line
