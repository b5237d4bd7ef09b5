"""Leases: at most one recpipe remuxes and publishes a recording at a time, across machines.

A lease is a small JSON object beside the recording's outputs (``<sid>_<cname>.lease.json``),
created with a conditional write (S3 ``If-None-Match: *``; locally, under a directory lock). Whoever
creates it holds it until ``expires``; the holder renews it every third of its lifetime with
``If-Match`` on the ETag it last wrote, and deletes it (again ``If-Match``) when done. A lease whose
holder died expires, and the next comer takes it over with ``If-Match`` on the expired lease's ETag,
so of two comers only one wins; a holder that was a process on this machine and is gone (a crash)
is taken over at once. Outputs are committed atomically and are the same whoever makes
them, so even a holder that lost its lease while stalled cannot leave a mixed set behind; and before
each commit the holder makes sure the lease is still its own (``Lease.confirm``), so such a holder
stops there instead of writing over what the new holder made from newer inputs. A lease is not a
fence: a holder that stalls just after that check, for longer than the lease has left (at least half
its life), still commits once; object stores offer nothing to refuse that write.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.model.exceptions import LeaseLost, ObjectNotFound, PreconditionFailed, StorageError
from pipeline.run.interrupts import deferred
from pipeline.run.liveness import gone, this_host
from pipeline.storage.base import Storage

log = logging.getLogger(__name__)

SCHEMA = "recpipe.lease/1"
MAX_LEASE_BYTES = 64 * 1024
ATTEMPTS = 3
"""Tries when the lease vanishes or changes between looking at it and taking it."""

Clock = Callable[[], float]


def new_owner() -> str:
    """An owner id unique to this process and run: host (and PID namespace), pid and a random token."""
    return f"{this_host()}:{os.getpid()}:{secrets.token_hex(4)}"


def died_here(owner: str) -> bool:
    """Whether ``owner`` was a process on this host that no longer exists: its lease can be taken
    over at once instead of when it expires (a rerun after a crash)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return pid.isdigit() and gone(host, int(pid))


@dataclass(frozen=True, kw_only=True, slots=True)
class Holder:
    """Someone else's live lease."""

    owner: str
    expires: float


def lease_document(*, owner: str, expires: float) -> bytes:
    """The lease object's bytes."""
    return json.dumps({"schema": SCHEMA, "owner": owner, "expires": round(expires, 3)}).encode()


def read_holder(data: bytes) -> Holder | None:
    """The holder a lease object names; None if it is not a lease recpipe can read (taken over)."""
    try:
        doc = json.loads(data)
        return Holder(owner=str(doc["owner"]), expires=float(doc["expires"]))
    except (ValueError, KeyError, TypeError):
        return None


_HELD: set[Lease] = set()
_HELD_LOCK = threading.Lock()


def release_all() -> None:
    """Release every lease this process still holds (on the way out of an interrupted run)."""
    with _HELD_LOCK:
        held = list(_HELD)
    for lease in held:
        lease.release()


class Lease:
    """A lease this process holds; ``keep()`` renews it in the background until ``release()``.
    Every held lease is also registered, so an interrupted process can release it (``release_all``)."""

    def __init__(
        self, storage: Storage, key: str, *, owner: str, seconds: float, etag: str, clock: Clock
    ) -> None:
        self.storage = storage
        self.key = key
        self.owner = owner
        self._seconds = seconds
        self._etag = etag
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewing = threading.Lock()
        """One renewal at a time: each writes on the ETag the last one got."""
        self._renewed = clock()
        """When the lease was last written by this process (taken or renewed), by ``clock``."""
        self.lost = False
        """Set when a renewal found the lease taken over (this process stalled past its expiry)."""
        self._released = False
        """Set by ``release``: nothing renews the lease after it."""
        with _HELD_LOCK:
            _HELD.add(self)

    def renew(self) -> bool:
        """Extend the lease by its lifetime; False if someone else holds it now (``lost``), or once
        released."""
        with self._renewing:
            if self.lost or self._released:
                return False
            now = self._clock()
            doc = lease_document(owner=self.owner, expires=now + self._seconds)
            try:
                self._etag = self.storage.put_if(doc, self.key, etag=self._etag).etag
            except (PreconditionFailed, ObjectNotFound):
                self.lost = True
                log.warning("lost the lease %s: another recpipe took it over", self.key)
                return False
            self._renewed = now
            return True

    def confirm(self) -> None:
        """Return while the lease is still this process's, else raise ``LeaseLost``: called before
        each commit. A lease renewed on time is trusted as it is (no request); one last written more
        than half its lifetime ago — the process stalled, or its renewals failed — is renewed here
        first, so nothing is committed on a lease another recpipe may have taken over meanwhile."""
        if self._clock() - self._renewed > self._seconds / 2:
            self.renew()
        if self.lost:
            raise LeaseLost(
                f"another recpipe took over the lease {self.key}; this run publishes nothing more"
            )

    def keep(self) -> None:
        """Renew every third of the lifetime until released (a daemon thread)."""

        def loop() -> None:
            while not self._stop.wait(self._seconds / 3):
                try:
                    if not self.renew():
                        return
                except StorageError as err:  # try again next time; the lease may still be ours
                    log.warning("cannot renew the lease %s: %s", self.key, err)

        self._thread = threading.Thread(target=loop, name="recpipe-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours (a failure only delays the next comer)."""
        with _HELD_LOCK:
            if self not in _HELD:
                return  # released already
            _HELD.discard(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._renewing:  # after a renewal under way, and none after it
            self._released = True
            if self.lost:
                return
            try:
                self.storage.delete_if(self.key, etag=self._etag)
            except (PreconditionFailed, ObjectNotFound):
                log.debug("lease %s was no longer ours at release", self.key)
            except StorageError as err:
                log.warning("cannot release the lease %s (it expires by itself): %s", self.key, err)


def acquire(
    storage: Storage, key: str, *, owner: str, seconds: float, clock: Clock = time.time
) -> Lease | Holder:
    """Take the lease at ``key``: a ``Lease`` when this process holds it, else the live ``Holder``."""
    for _ in range(ATTEMPTS):
        doc = lease_document(owner=owner, expires=clock() + seconds)
        try:
            with deferred():  # created and registered for release, or neither
                info = storage.put_if(doc, key, etag=None)
                return Lease(storage, key, owner=owner, seconds=seconds, etag=info.etag, clock=clock)
        except PreconditionFailed:
            pass
        try:  # there is a lease: live, or expired (its holder died) and ours to take over
            current = storage.stat(key)
            holder = read_holder(storage.read_bytes(key, max_bytes=MAX_LEASE_BYTES))
        except ObjectNotFound:
            continue  # released meanwhile: try to create it again
        if holder is not None and holder.expires > clock() and not died_here(holder.owner):
            return holder
        log.info("taking over the lease %s (held by %s, gone)", key, holder.owner if holder else "?")
        try:
            with deferred():
                info = storage.put_if(doc, key, etag=current.etag)
                return Lease(storage, key, owner=owner, seconds=seconds, etag=info.etag, clock=clock)
        except (PreconditionFailed, ObjectNotFound):
            continue  # someone else was faster (or released it): look again
    log.info("the lease %s changed %d times while recpipe tried to take it", key, ATTEMPTS)
    return Holder(owner="(changing hands)", expires=clock() + seconds)
