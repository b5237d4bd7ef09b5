"""Whether a process recorded by an earlier run (in a lease, in a work directory's name) still lives.

A pid means something only on its machine and in its PID namespace (containers on one host can share
a hostname, never a PID namespace), so both are recorded beside it.
"""

from __future__ import annotations

import os
import socket


def pid_namespace() -> int:
    """This process's PID namespace id (0 where the platform does not say)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def this_host() -> str:
    """This machine and PID namespace: ``<hostname>~<namespace>``."""
    return f"{socket.gethostname()}~{pid_namespace()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists in this namespace."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gone(host: str, pid: int) -> bool:
    """Whether the process ``pid`` of ``host`` (as ``this_host`` wrote it) is known to have ended."""
    return host == this_host() and pid != os.getpid() and not pid_alive(pid)
