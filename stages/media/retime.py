"""Rewrite a slice's clock: shift every PTS, DTS and PCR, and cut a stream's tail. Pure bytes in, bytes out.

The streaming remux feeds ffmpeg one continuous transport stream. Where the recording's clock is
continuous nothing is rewritten (``retime`` returns whole packets unchanged). Where it is not — a gap
being closed, timestamps restarting after an interruption, two slices covering the same seconds —
``stages.splice`` decides a shift for the slice and, for an overlap, where the earlier slice's streams
must end; this module applies that to the bytes:

- ``shift`` (90 kHz ticks) is added to every PES header's PTS and DTS and to every PCR base, modulo
  2^33 as the fields wrap; marker bits and the PCR extension are kept.
- ``cuts`` maps a PID to a decode time (in the slice's own unwrapped clock, as ``stages.media.ts``
  reports it): the PES that starts at or after it, and every later packet of that PID, are dropped.
  Dropping whole PES from the end in decode order never removes a picture that a kept one refers to.

Bytes outside packet sync (garbage inside a damaged slice) are dropped when rewriting, since they
cannot be parsed; a partial last packet is always dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from pipeline.model.media import PTS_WRAP, unwrap
from stages.media.ts import NULL_PID, PACKET, SYNC, read_pts

log = logging.getLogger(__name__)

_PUSI = bytes(1 if b & 0x40 else 0 for b in range(256))
_ADAPTATION = bytes(1 if b & 0x20 else 0 for b in range(256))
PES_START = b"\x00\x00\x01"


def write_pts(buf: bytearray, at: int, value: int) -> None:
    """Store a 33-bit timestamp in the 5 bytes at ``at``, keeping the 4-bit prefix and marker bits."""
    value %= PTS_WRAP
    buf[at] = (buf[at] & 0xF0) | ((value >> 29) & 0x0E) | 0x01
    buf[at + 1] = (value >> 22) & 0xFF
    buf[at + 2] = ((value >> 14) & 0xFE) | 0x01
    buf[at + 3] = (value >> 7) & 0xFF
    buf[at + 4] = ((value << 1) & 0xFE) | 0x01


def read_pcr_base(buf: bytes | bytearray, at: int) -> int:
    """The 33-bit base of the PCR whose 6 bytes start at ``at``."""
    return (
        (buf[at] << 25) | (buf[at + 1] << 17) | (buf[at + 2] << 9) | (buf[at + 3] << 1) | (buf[at + 4] >> 7)
    )


def write_pcr_base(buf: bytearray, at: int, value: int) -> None:
    """Store a PCR base at ``at``, keeping the reserved bits and the 9-bit extension."""
    value %= PTS_WRAP
    buf[at] = (value >> 25) & 0xFF
    buf[at + 1] = (value >> 17) & 0xFF
    buf[at + 2] = (value >> 9) & 0xFF
    buf[at + 3] = (value >> 1) & 0xFF
    buf[at + 4] = ((value & 0x01) << 7) | (buf[at + 4] & 0x7F)


def sync_runs(data: bytes) -> Iterator[tuple[int, int]]:
    """``(offset, packets)`` for every run of consecutive in-sync packets, skipping what lies between."""
    pos, end = 0, len(data)
    while end - pos >= PACKET:
        if data[pos] != SYNC:
            pos = _next_sync(data, pos)
            continue
        count = (end - pos) // PACKET
        run = count - len(data[pos : pos + count * PACKET : PACKET].lstrip(b"\x47"))
        yield pos, run
        pos += run * PACKET


def _next_sync(data: bytes, pos: int) -> int:
    """The next offset with a sync byte there and one packet later (or the end)."""
    at = data.find(b"\x47", pos + 1)
    while at != -1 and at + PACKET < len(data):
        if data[at + PACKET] == SYNC:
            return at
        at = data.find(b"\x47", at + 1)
    return len(data)


def shift_packet(buf: bytearray, off: int, shift: int) -> None:
    """Shift the PCR and the PES timestamps of the packet at ``off`` (whatever of them it carries)."""
    b3 = buf[off + 3]
    payload = off + 4
    if b3 & 0x20:
        af_len = buf[off + 4]
        if af_len >= 7 and buf[off + 5] & 0x10:
            write_pcr_base(buf, off + 6, read_pcr_base(buf, off + 6) + shift)
        payload += 1 + af_len
    if not buf[off + 1] & 0x40 or not b3 & 0x10 or payload + 14 > off + PACKET:
        return
    if buf[payload : payload + 3] != PES_START:
        return
    flags = buf[payload + 7]
    if flags & 0x80:
        write_pts(buf, payload + 9, read_pts(buf, payload + 9) + shift)
    if flags & 0x40 and payload + 19 <= off + PACKET:
        write_pts(buf, payload + 14, read_pts(buf, payload + 14) + shift)


def decode_time(buf: bytes | bytearray, off: int) -> int | None:
    """The DTS (else PTS) of the PES that the packet at ``off`` starts, or None."""
    b3 = buf[off + 3]
    payload = off + 4 + (1 + buf[off + 4] if b3 & 0x20 else 0)
    if not b3 & 0x10 or payload + 14 > off + PACKET or buf[payload : payload + 3] != PES_START:
        return None
    flags = buf[payload + 7]
    if not flags & 0x80:
        return None
    if flags & 0x40 and payload + 19 <= off + PACKET:
        return read_pts(buf, payload + 14)
    return read_pts(buf, payload + 9)


def retime(data: bytes, *, shift: int = 0, cuts: Mapping[int, int] | None = None) -> bytes:
    """``data``'s packets with ``shift`` applied and each PID in ``cuts`` ended at its cut."""
    if not shift and not cuts:
        whole = len(data) - len(data) % PACKET
        return data if whole == len(data) else data[:whole]
    out = bytearray()
    clock: dict[int, int] = {}
    ended: set[int] = set()
    for start, count in sync_runs(data):
        run = bytearray(data[start : start + count * PACKET])
        if cuts:
            run = _cut(run, cuts, clock=clock, ended=ended)
        if shift:
            for off in _candidates(run):
                shift_packet(run, off, shift)
        out += run
    return bytes(out)


def _candidates(run: bytearray) -> Iterator[int]:
    """Offsets of the packets that can carry a PCR or a PES header: PUSI set, or an adaptation field.

    The flags of all packets are gathered with C-speed slicing, so only those packets are visited.
    """
    pusi = run[1::PACKET].translate(_PUSI)
    adaptation = run[3::PACKET].translate(_ADAPTATION)
    either = (int.from_bytes(pusi) | int.from_bytes(adaptation)).to_bytes(len(pusi))
    i = either.find(1)
    while i != -1:
        yield i * PACKET
        i = either.find(1, i + 1)


def _cut(run: bytearray, cuts: Mapping[int, int], *, clock: dict[int, int], ended: set[int]) -> bytearray:
    """The run without the packets of each cut PID from its first PES at or after its cut.

    ``clock`` (last decode time per PID, unwrapped) and ``ended`` carry over between runs of a slice.
    """
    kept = bytearray()
    for off in range(0, len(run), PACKET):
        pid = ((run[off + 1] & 0x1F) << 8) | run[off + 2]
        if pid in ended:
            continue
        if pid in cuts and pid != NULL_PID and run[off + 1] & 0x40:
            raw = decode_time(run, off)
            if raw is not None:
                clock[pid] = ticks = unwrap(raw, clock.get(pid))
                if ticks >= cuts[pid]:
                    ended.add(pid)
                    continue
        kept += run[off : off + PACKET]
    return kept
