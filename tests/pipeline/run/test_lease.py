"""Leases on both storages: one holder at a time, expiry and takeover, renewal, release."""

from __future__ import annotations

import threading

import pytest

from pipeline.model.exceptions import LeaseLost
from pipeline.run.lease import Holder, Lease, acquire, lease_document, read_holder
from pipeline.storage import LocalStorage, Storage

KEY = "rec/sid_room.lease.json"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def take(storage: Storage, owner: str, clock: Clock, seconds: float = 60) -> Lease | Holder:
    return acquire(storage, KEY, owner=owner, seconds=seconds, clock=clock)


def test_one_holder_at_a_time_then_release(storage: Storage) -> None:
    clock = Clock()
    mine = take(storage, "a", clock)
    assert isinstance(mine, Lease)
    other = take(storage, "b", clock)
    assert other == Holder(owner="a", expires=1060.0)
    mine.release()
    assert not storage.exists(KEY)
    assert isinstance(take(storage, "b", clock), Lease)


def test_an_expired_lease_is_taken_over_and_the_old_holder_knows(storage: Storage) -> None:
    clock = Clock()
    old = take(storage, "a", clock)
    assert isinstance(old, Lease)
    clock.now += 61
    new = take(storage, "b", clock)
    assert isinstance(new, Lease)
    assert read_holder(storage.read_bytes(KEY, max_bytes=1000)) == Holder(owner="b", expires=1121.0)
    assert old.renew() is False
    assert old.lost
    old.release()  # must not delete b's lease
    assert read_holder(storage.read_bytes(KEY, max_bytes=1000)) == Holder(owner="b", expires=1121.0)


def test_renewal_moves_the_expiry(storage: Storage) -> None:
    clock = Clock()
    lease = take(storage, "a", clock)
    assert isinstance(lease, Lease)
    clock.now += 50
    assert lease.renew()
    clock.now += 50  # past the first expiry, inside the renewed one
    assert take(storage, "b", clock) == Holder(owner="a", expires=1110.0)


def test_unreadable_lease_counts_as_expired(storage: Storage) -> None:
    storage.put_bytes(b"not json", KEY)
    assert isinstance(take(storage, "a", Clock()), Lease)


def test_of_many_comers_on_an_expired_lease_exactly_one_wins(storage: Storage) -> None:
    storage.put_bytes(lease_document(owner="dead", expires=10.0), KEY)
    clock = Clock()
    results: list[Lease | Holder] = []
    barrier = threading.Barrier(6)

    def comer(name: str) -> None:
        barrier.wait()
        results.append(take(storage, name, clock))

    threads = [threading.Thread(target=comer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, Lease)]
    if isinstance(storage, LocalStorage):
        assert len(winners) == 1
    else:  # moto checks conditions and stores in two steps; real S3 does both atomically
        assert len(winners) >= 1
    holder = read_holder(storage.read_bytes(KEY, max_bytes=1000))
    assert holder is not None
    assert holder.owner in {w.owner for w in winners}


def test_confirm_trusts_a_lease_renewed_on_time(storage: Storage) -> None:
    clock = Clock()
    lease = take(storage, "a", clock)
    assert isinstance(lease, Lease)
    written = storage.stat(KEY).etag
    clock.now += 29  # under half the lifetime since it was written: no request
    lease.confirm()
    assert storage.stat(KEY).etag == written


def test_confirm_renews_a_lease_left_unrenewed_past_half_its_life(storage: Storage) -> None:
    clock = Clock()
    lease = take(storage, "a", clock)
    assert isinstance(lease, Lease)
    clock.now += 31  # its renewals stalled: confirming writes it again before anything is committed
    lease.confirm()
    assert read_holder(storage.read_bytes(KEY, max_bytes=1000)) == Holder(owner="a", expires=1091.0)
    written = storage.stat(KEY).etag
    clock.now += 29
    lease.confirm()  # renewed 29 s ago: trusted
    assert storage.stat(KEY).etag == written


def test_confirm_raises_once_another_recpipe_took_the_lease_over(storage: Storage) -> None:
    clock = Clock()
    old = take(storage, "a", clock)
    assert isinstance(old, Lease)
    clock.now += 61  # a stalled holder: its lease ended and another recpipe took it
    assert isinstance(take(storage, "b", clock), Lease)
    with pytest.raises(LeaseLost, match="another recpipe took over"):
        old.confirm()
    assert old.lost
    with pytest.raises(LeaseLost):
        old.confirm()  # and stays lost, even where a renewal would be due
    old.release()
    assert read_holder(storage.read_bytes(KEY, max_bytes=1000)) == Holder(owner="b", expires=1121.0)


def test_renewals_at_the_same_time_never_take_the_lease_for_lost(tmp_path) -> None:
    """The background renewal and a commit's confirmation may renew at once: each writes on the ETag
    the other got, and only one at a time may."""
    storage = LocalStorage(tmp_path)
    lease = acquire(storage, KEY, owner="a", seconds=60)
    assert isinstance(lease, Lease)
    start, renewed = threading.Barrier(8), []

    def renew_often() -> None:
        start.wait()
        renewed.extend(lease.renew() for _ in range(5))

    threads = [threading.Thread(target=renew_often) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert renewed == [True] * 40
    assert not lease.lost
    lease.confirm()


def test_keep_renews_in_the_background(storage: Storage) -> None:
    lease = acquire(storage, KEY, owner="a", seconds=3)
    assert isinstance(lease, Lease)
    first = storage.stat(KEY).etag
    lease.keep()
    try:
        deadline = threading.Event()
        for _ in range(40):
            if storage.stat(KEY).etag != first:
                break
            deadline.wait(0.1)
        assert storage.stat(KEY).etag != first
    finally:
        lease.release()
    assert not storage.exists(KEY)


@pytest.mark.parametrize("data", [b"{}", b"[]", b'{"owner": "x", "expires": "soon"}', b"\xff"])
def test_read_holder_refuses_what_is_not_a_lease(data: bytes) -> None:
    assert read_holder(data) is None


def test_a_lease_whose_holder_died_on_this_machine_is_taken_over_at_once(storage: Storage) -> None:
    import subprocess
    import sys

    from pipeline.run.liveness import this_host

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = f"{this_host()}:{int(dead.stdout)}:abcd"
    storage.put_bytes(lease_document(owner=owner, expires=10_000.0), KEY)
    assert isinstance(take(storage, "me", Clock()), Lease)


def test_a_live_or_foreign_holder_is_respected(storage: Storage) -> None:
    import os

    from pipeline.run.liveness import this_host

    for owner in (f"{this_host()}:{os.getppid()}:abcd", "other-host~1:1:abcd"):
        storage.put_bytes(lease_document(owner=owner, expires=10_000.0), KEY)
        assert take(storage, "me", Clock()) == Holder(owner=owner, expires=10_000.0)
