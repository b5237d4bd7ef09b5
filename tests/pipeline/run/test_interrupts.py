"""SIGTERM as a clean stop, held back inside ``deferred()`` and raised right after it."""

from __future__ import annotations

import os
import signal

import pytest

from pipeline.run import interrupts


@pytest.fixture
def installed():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    interrupts.install()
    yield
    signal.signal(signal.SIGTERM, before[0])
    signal.signal(signal.SIGINT, before[1])


def test_sigterm_becomes_keyboard_interrupt(installed):
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        os.kill(os.getpid(), signal.SIGTERM)


def block_interrupted_by_sigterm(done: list[str]) -> None:
    with interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # give the handler every chance to run here
            pass
        done.append("the whole block ran")


def test_a_signal_inside_deferred_waits_for_the_end_of_the_block(installed):
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        block_interrupted_by_sigterm(done)
    assert done == ["the whole block ran"]
