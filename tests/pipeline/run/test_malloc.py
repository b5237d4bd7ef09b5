"""How glibc's malloc is set up (pipeline.run.malloc)."""

from __future__ import annotations

import ctypes
import platform

import pytest

from pipeline.run import malloc

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="these mallopt parameters are glibc's")


@glibc
def test_glibc_takes_the_limit() -> None:
    assert malloc.limit_malloc_arenas(2) is True


@glibc
def test_glibc_keeps_the_freed_heap() -> None:
    assert malloc.keep_freed_heap() is True


def test_without_a_c_library_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_library(name: str | None) -> ctypes.CDLL:
        raise OSError("no dynamic loading here")

    monkeypatch.setattr(malloc.ctypes, "CDLL", no_library)
    assert malloc.limit_malloc_arenas() is False
    assert malloc.keep_freed_heap() is False


def test_a_c_library_without_mallopt_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:
        def __init__(self, name: str | None) -> None:
            pass

    monkeypatch.setattr(malloc.ctypes, "CDLL", NoMallopt)
    assert malloc.limit_malloc_arenas() is False
    assert malloc.keep_freed_heap() is False


def test_a_refused_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class Refusing:
        def __init__(self, name: str | None) -> None:
            def mallopt(param: int, value: int) -> int:
                calls.append((param, value))
                return 0

            self.mallopt = mallopt

    monkeypatch.setattr(malloc.ctypes, "CDLL", Refusing)
    assert malloc.keep_freed_heap(keep=1 << 20, map_from=1 << 19) is False
    assert calls == [(malloc.M_MMAP_THRESHOLD, 1 << 19)]
