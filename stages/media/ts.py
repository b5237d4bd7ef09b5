"""recpipe's streaming MPEG-TS reader (ISO/IEC 13818-1): feed bytes as they arrive, get ``SliceMedia``.

What it reads, and why that is enough to trust a slice:

- packet sync (0x47 every 188 bytes), with resync after garbage, and a partial last packet;
- PAT → PMT → the elementary streams (H.264/HEVC video, AAC/MP3 audio);
- every PES header's PTS/DTS, unwrapped past the 33-bit wrap, per stream;
- continuity counters of every PID (lost packets), transport error flags;
- the first video access unit (IDR or not) and the SPS's resolution; the first ADTS header.

Speed comes from touching only three header bytes of most packets: the payload of a packet is
read only when it starts a PES or carries the program tables. The reader never raises on bad
input; what is wrong ends up in ``SliceMedia`` (see ``SliceMedia.problems``).
"""

from __future__ import annotations

import array
import itertools
import logging
import operator
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.model.media import PTS_WRAP, TICKS_PER_S, SliceMedia, StreamFacts, StreamKind, unwrap
from stages.media import h264

log = logging.getLogger(__name__)

PACKET = 188
SYNC = 0x47
NULL_PID = 0x1FFF
PAT_PID = 0
MAX_FRAME_TICKS = 90_000
"""A 'frame' longer than one second is a timestamp jump, not a frame duration."""
FIRST_AU_LIMIT = 256 * 1024
"""Bytes of the first video PES kept to find its first coded picture (a keyframe is rarely larger)."""
READ_CHUNK = 1024 * 1024
MANY_PIDS = 16
"""More PIDs than this in one run of packets are listed packet by packet, not mask by mask."""
AAC_FRAME_SAMPLES = 1024
HALF_WRAP = PTS_WRAP // 2

STREAM_TYPES: dict[int, tuple[StreamKind, str]] = {
    0x1B: ("video", "h264"),
    0x24: ("video", "hevc"),
    0x02: ("video", "mpeg2"),
    0x0F: ("audio", "aac"),
    0x11: ("audio", "aac-latm"),
    0x03: ("audio", "mp3"),
    0x04: ("audio", "mp3"),
    0x81: ("audio", "ac3"),
}
"""PMT stream_type → what recpipe calls it (ISO/IEC 13818-1 Table 2-34, ATSC for 0x81)."""

ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def read_pts(data: bytes | bytearray, at: int) -> int:
    """A 33-bit PTS/DTS from the 5 bytes at ``at``."""
    return (
        ((data[at] >> 1) & 0x07) << 30
        | data[at + 1] << 22
        | (data[at + 2] >> 1) << 15
        | data[at + 3] << 7
        | data[at + 4] >> 1
    )


def adts_header(data: bytes | bytearray) -> tuple[int, int] | None:
    """``(sample_rate, channels)`` from an ADTS header at the start of ``data``."""
    if len(data) < 4 or data[0] != 0xFF or (data[1] & 0xF6) != 0xF0:
        return None
    rate_index = (data[2] >> 2) & 0x0F
    channels = ((data[2] & 0x01) << 2) | (data[3] >> 6)
    if rate_index >= len(ADTS_RATES):
        return None
    return ADTS_RATES[rate_index], channels


class _Adts:
    """The ADTS frames of the last PES (or two), for the slice's last audio duration.

    Only the last complete PES's frame count matters (``pes_frames``), so payloads are kept, not
    walked, as they arrive: the current PES's and the previous one's, walked once at the end.
    """

    __slots__ = ("current", "previous")

    def __init__(self) -> None:
        self.current: list[bytes] = []
        self.previous: list[bytes] = []

    def start_pes(self) -> None:
        self.previous, self.current = self.current, []

    def feed(self, data: bytes) -> None:
        self.current.append(data)

    @property
    def lost(self) -> bool:
        """Whether the current PES's frames stop making sense (a bad header) before its end."""
        return _walk_adts(b"".join(self.current))[1]

    @property
    def pes_frames(self) -> int:
        """Frames in the last complete PES (or the one in progress at the end)."""
        return _walk_adts(b"".join(self.current))[0] or _walk_adts(b"".join(self.previous))[0]


def _walk_adts(data: bytes) -> tuple[int, bool]:
    """``(frames, lost)``: the ADTS frames found one after another from the start of ``data``, and
    whether a header that is not one ended the walk."""
    frames, pos = 0, 0
    while pos + 7 <= len(data):
        length = ((data[pos + 3] & 0x03) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        if data[pos] != 0xFF or data[pos + 1] & 0xF6 != 0xF0 or length < 7:
            return frames, True
        frames += 1
        pos += length
    return frames, False


class _Stream:
    """Mutable per-stream state while reading; frozen into ``StreamFacts`` at the end."""

    __slots__ = (
        "adts",
        "channels",
        "codec",
        "first_au",
        "first_dts",
        "first_pts",
        "frame_ticks",
        "height",
        "keyframe",
        "kind",
        "last_dts",
        "last_pts",
        "max_pts",
        "min_pts",
        "new_dts",
        "new_pts",
        "pes_count",
        "pid",
        "sample_rate",
        "stream_type",
        "width",
    )

    def __init__(self, pid: int, stream_type: int) -> None:
        self.pid = pid
        self.stream_type = stream_type
        self.kind, self.codec = STREAM_TYPES.get(stream_type, ("other", f"stream type 0x{stream_type:02x}"))
        self.pes_count = 0
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.min_pts: int | None = None
        self.max_pts: int | None = None
        self.first_dts: int | None = None
        self.last_dts: int | None = None
        self.new_pts: list[bytes] = []
        self.new_dts: list[bytes | None] = []
        """The 5-byte PTS (and DTS) fields of the PES read since the last ``absorb`` (decoded in bulk)."""
        self.frame_ticks: int | None = None
        self.keyframe: bool | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self.first_au: bytearray | None = bytearray() if self.kind == "video" else None
        """Bytes of the first video PES, while it is being collected; None once judged."""
        self.adts = _Adts() if self.codec == "aac" else None

    def absorb(self) -> None:
        """Fold the timestamps read since the last call into the stream's: unwrapped past the 33-bit
        wrap, first, last, lowest, highest, the shortest step between PES (``frame_ticks``).

        In bulk where the clock runs without a wrap (every step under half the wrap), one PES at a
        time otherwise; the result is the same either way.
        """
        if not self.new_pts:
            return
        pts = _decode_timestamps(self.new_pts)
        dts = self._new_dts()
        self.new_pts, self.new_dts = [], []
        first = unwrap(pts[0], self.last_pts)
        steps = list(map(operator.sub, pts[1:], pts[:-1]))
        if steps and not -HALF_WRAP <= min(steps) <= max(steps) < HALF_WRAP:
            for raw_pts, raw_dts in zip(pts, dts, strict=True):
                self.timestamps(raw_pts, raw_dts)
            return
        shift = first - pts[0]
        values = list(map(shift.__add__, pts)) if shift else pts
        if self.last_pts is not None:
            steps.append(first - self.last_pts)
        short = min((step for step in set(steps) if 0 < step <= MAX_FRAME_TICKS), default=None)
        if short is not None and (self.frame_ticks is None or short < self.frame_ticks):
            self.frame_ticks = short
        low, high = min(values), max(values)
        if self.first_pts is None or self.min_pts is None or self.max_pts is None:
            self.first_pts, self.min_pts, self.max_pts = first, low, high
        else:
            self.min_pts, self.max_pts = min(self.min_pts, low), max(self.max_pts, high)
        self.last_pts = values[-1]
        if dts.count(None) != len(dts):
            self._absorb_dts(values, dts)

    def _new_dts(self) -> list[int | None]:
        """The decoded DTS of the PES read since the last ``absorb`` (None where a PES has none)."""
        if self.new_dts.count(None) == len(self.new_dts):  # the usual case: no DTS at all
            return [None] * len(self.new_dts)
        fields = [field for field in self.new_dts if field is not None]
        values = iter(_decode_timestamps(fields))
        return [None if field is None else next(values) for field in self.new_dts]

    def _absorb_dts(self, pts: list[int], dts: list[int | None]) -> None:
        """The DTS part of ``absorb`` (each unwrapped near the last DTS, the first near its PTS)."""
        for value, raw in zip(pts, dts, strict=True):
            if raw is not None:
                self._dts(raw, value)

    def timestamps(self, pts: int, dts: int | None) -> None:
        """Place one PES's timestamps (already counted in ``pes_count``)."""
        previous = self.last_pts
        pts = unwrap(pts, previous)
        if self.first_pts is None:
            self.first_pts = pts
            self.min_pts = self.max_pts = pts
        else:
            assert self.min_pts is not None
            assert self.max_pts is not None
            assert previous is not None
            step = pts - previous
            if 0 < step <= MAX_FRAME_TICKS and (self.frame_ticks is None or step < self.frame_ticks):
                self.frame_ticks = step
            self.min_pts = min(self.min_pts, pts)
            self.max_pts = max(self.max_pts, pts)
        self.last_pts = pts
        if dts is not None:
            self._dts(dts, pts)

    def _dts(self, raw: int, pts: int) -> None:
        dts = unwrap(raw, self.last_dts if self.last_dts is not None else pts)
        if self.first_dts is None:
            self.first_dts = dts
        self.last_dts = dts

    def judge_first_au(self) -> None:
        """Decide whether the first access unit is a keyframe, from what was collected."""
        data = bytes(self.first_au or b"")
        self.first_au = None
        if self.codec == "h264":
            self.keyframe = h264.first_picture_is_idr(data)
            self.look_for_sps(data)
        elif self.codec == "hevc":
            self.keyframe = h264.hevc_first_picture_is_irap(data)

    def look_for_sps(self, data: bytes) -> None:
        if self.width is not None or self.codec != "h264":
            return
        sps = h264.find_sps(data)
        size = h264.sps_resolution(sps) if sps else None
        if size:
            self.width, self.height = size

    def tail_ticks(self) -> int | None:
        """How long the last PES lasts: counted AAC frames when known, else one frame step."""
        if self.adts is not None and self.sample_rate and self.adts.pes_frames and not self.adts.lost:
            return round(self.adts.pes_frames * AAC_FRAME_SAMPLES * TICKS_PER_S / self.sample_rate)
        return self.frame_ticks

    def facts(self) -> StreamFacts:
        return StreamFacts(
            pid=self.pid,
            stream_type=self.stream_type,
            kind=self.kind,
            codec=self.codec,
            pes_count=self.pes_count,
            first_pts=self.first_pts,
            last_pts=self.last_pts,
            min_pts=self.min_pts,
            max_pts=self.max_pts,
            first_dts=self.first_dts,
            last_dts=self.last_dts,
            frame_ticks=self.frame_ticks,
            tail_ticks=self.tail_ticks(),
            keyframe_at_start=self.keyframe,
            width=self.width,
            height=self.height,
            sample_rate=self.sample_rate,
            channels=self.channels,
        )


@dataclass(slots=True)
class _Counters:
    packets: int = 0
    skipped: int = 0
    resyncs: int = 0
    transport_errors: int = 0


class TsReader:
    """Push parser: ``feed`` chunks of any size in order, then ``close`` for the ``SliceMedia``."""

    def __init__(self) -> None:
        self._carry = b""
        self._size = 0
        self._synced_once = False
        self._n = _Counters()
        self._cc: dict[int, int] = {}
        self._cc_errors: dict[int, int] = {}
        self._pmt_pid: int | None = None
        self._has_pat = False
        self._streams: dict[int, _Stream] = {}
        self._collecting: set[int] = set()
        """PIDs whose every payload is read: video until its first PES is judged, AAC throughout."""

    def feed(self, data: bytes) -> None:
        """Read ``data``, the next bytes of the slice."""
        self._size += len(data)
        buf = self._carry + data if self._carry else bytes(data)
        pos, end = 0, len(buf)
        while end - pos >= PACKET:
            if buf[pos] != SYNC:
                found = self._resync(buf, pos)
                self._n.skipped += found - pos
                pos = found
                continue
            count = (end - pos) // PACKET
            syncs = buf[pos : pos + count * PACKET : PACKET]
            run = count - len(syncs.lstrip(b"\x47"))
            self._packets(buf, pos, run)
            self._synced_once = True
            pos += run * PACKET
        self._carry = buf[pos:]

    def _resync(self, buf: bytes, pos: int) -> int:
        """The next offset that looks like a packet start (sync there and 188 bytes on), else near the end."""
        if self._synced_once:
            self._n.resyncs += 1
        end = len(buf)
        at = buf.find(b"\x47", pos + 1)
        while at != -1 and at + PACKET < end:
            if buf[at + PACKET] == SYNC:
                return at
            at = buf.find(b"\x47", at + 1)
        if at != -1:  # a candidate too close to the end to confirm: keep it for the next chunk
            return at
        return max(pos + 1, end - PACKET + 1)

    def _packets(self, buf: bytes, start: int, count: int) -> None:
        """Read ``count`` packets starting at ``start`` (all in sync).

        The header bytes of every packet are taken in bulk (strided slices, translate tables and
        big-integer masks run in C): transport errors are counted and each PID's continuity counters
        compared with the run they must form in one step; only when that comparison fails are the
        counters walked packet by packet. Python then visits just the packets whose payload matters:
        those that start a PES or the tables, and those of the streams being collected.
        """
        end = start + count * PACKET
        heads = _Heads(buf, start, end)
        self._n.transport_errors += heads.transport_errors()
        if not self._continuity_in_bulk(heads):
            self._continuity(buf, start, heads)
        self._dispatch(buf, start, heads)
        self._n.packets += count
        for stream in self._streams.values():
            stream.absorb()

    def _continuity_in_bulk(self, heads: _Heads) -> bool:
        """Whether every PID's counters run on from the last chunk's without a break (then recorded)."""
        cc = self._cc
        runs: dict[int, bytes] = {}
        for pid in heads.pids():
            if pid == NULL_PID:
                continue
            run = heads.counters(pid)
            if not run:
                continue
            first = run[0] & 0x0F
            last = cc.get(pid)
            if last is not None and first != (last + 1) & 0x0F:
                return False
            if run != _counting(first, len(run)):
                return False
            runs[pid] = run
        for pid, run in runs.items():
            cc[pid] = run[-1] & 0x0F
        return True

    def _continuity(self, buf: bytes, start: int, heads: _Heads) -> None:
        """Walk the continuity counters packet by packet: a repeat is allowed (a duplicate packet), and a
        jump the packet's adaptation field declares (discontinuity_indicator) is not an error."""
        cc, cc_errors = self._cc, self._cc_errors
        off = start
        for pid, b3 in zip(heads.pid_list(), heads.b3, strict=True):
            if pid != NULL_PID and b3 & 0x10:
                counter = b3 & 0x0F
                last = cc.get(pid)
                if (
                    last is not None
                    and counter != (last + 1) & 0x0F
                    and counter != last
                    and not self._discontinuity_flag(buf, off, b3)
                ):
                    cc_errors[pid] = cc_errors.get(pid, 0) + 1
                cc[pid] = counter
            off += PACKET

    def _dispatch(self, buf: bytes, start: int, heads: _Heads) -> None:
        """Read the payload of every packet that starts a unit, or belongs to a stream being collected.

        Packets are visited one by one, in order, until the program is known and every video stream's
        first picture is judged (which streams are collected changes meanwhile: the PMT adds them, a
        judged picture drops one; after a change the packets still to come are chosen again). From
        there each stream is read on its own (``_stream_packets``), which is what the one-by-one visit
        would do: once the program is known, a packet only ever changes its own stream.
        """
        b1, b2, b3 = heads.b1, heads.b2, heads.b3
        payload = self._payload
        after: int | None = 0
        while after is not None:
            collecting = frozenset(self._collecting)
            start_at, after = after, None
            if self._settled():
                for stream in self._streams.values():
                    self._stream_packets(stream, buf, start, heads, after=start_at)
                return
            for match in _NOT_ZERO.finditer(heads.wanted(collecting), start_at):
                index = match.start()
                pid = ((b1[index] & 0x1F) << 8) | b2[index]
                pusi = bool(b1[index] & 0x40)
                if pusi or pid in collecting:
                    payload(buf, start + index * PACKET, pid, pusi=pusi, b3=b3[index])
                if self._collecting != collecting:
                    after = index + 1
                    break

    def _settled(self) -> bool:
        """Whether the program is known and no stream still collects its first picture."""
        return bool(self._streams) and all(s.first_au is None for s in self._streams.values())

    def _stream_packets(self, stream: _Stream, buf: bytes, start: int, heads: _Heads, *, after: int) -> None:
        """Read one stream's packets from packet ``after`` on, as ``_payload`` would one at a time.

        Most PES only add their timestamps (``_pes_timestamps``); an AAC stream also keeps the payload
        of its last PES. A stream still looking for something in its payloads (the SPS, the first ADTS
        header) is read packet by packet.
        """
        if stream.adts is not None:
            if stream.sample_rate is None:
                self._one_by_one(stream, buf, start, heads, after=after)
            else:
                self._aac_packets(stream, buf, start, heads, after=after)
        elif stream.width is None and stream.codec == "h264":
            self._one_by_one(stream, buf, start, heads, after=after)
        else:
            _pes_timestamps(stream, buf, start, heads, after=after)

    def _one_by_one(self, stream: _Stream, buf: bytes, start: int, heads: _Heads, *, after: int) -> None:
        b1, b3 = heads.b1, heads.b3
        for index in _marked(heads.mask(stream.pid).to_bytes(heads.count), after):
            pusi = bool(b1[index] & 0x40)
            if pusi or stream.pid in self._collecting:
                self._payload(buf, start + index * PACKET, stream.pid, pusi=pusi, b3=b3[index])

    @staticmethod
    def _aac_packets(stream: _Stream, buf: bytes, start: int, heads: _Heads, *, after: int) -> None:
        """An AAC stream's packets: the timestamps of every PES, and the payloads of the last two
        (``_Adts``): only the packets that continue those two are read."""
        adts = stream.adts
        assert adts is not None
        b3 = heads.b3
        everything = heads.mask(stream.pid)
        units = everything & heads.starts()
        begun = _pes_timestamps(stream, buf, start, heads, after=after)
        """``(packet index, where its elementary-stream bytes start)`` of each PES begun in this run."""
        follow = (everything & ~units).to_bytes(heads.count)
        since = begun[-2][0] if len(begun) > 1 else after
        pieces: list[tuple[int, bytes]] = []
        for index in _marked(follow, since):
            flags = b3[index]
            off = start + index * PACKET
            begin = _payload_start(buf, off, flags)
            if flags & 0x10 and begin < off + PACKET:
                pieces.append((index, buf[begin : off + PACKET]))
        if not begun:
            adts.current.extend(piece for _, piece in pieces)
            return
        last, es = begun[-1]
        first_piece = buf[es : start + (last + 1) * PACKET]
        if len(begun) > 1:
            before, es = begun[-2]
            previous = buf[es : start + (before + 1) * PACKET]
            adts.previous = [previous, *(piece for i, piece in pieces if before < i < last)]
        else:
            adts.previous = [*adts.current, *(piece for i, piece in pieces if i < last)]
        adts.current = [first_piece, *(piece for i, piece in pieces if i > last)]

    @staticmethod
    def _discontinuity_flag(buf: bytes, off: int, b3: int) -> bool:
        """Whether the packet's adaptation field sets discontinuity_indicator (a legal CC jump)."""
        return bool(b3 & 0x20) and buf[off + 4] > 0 and bool(buf[off + 5] & 0x80)

    def _payload(self, buf: bytes, off: int, pid: int, *, pusi: bool, b3: int) -> None:
        if not b3 & 0x10:
            return
        start = _payload_start(buf, off, b3)
        end = off + PACKET
        if start >= end:
            return
        if pid == PAT_PID:
            if pusi and self._pmt_pid is None:
                self._read_pat(buf[start:end])
            return
        if pid == self._pmt_pid:
            if pusi and not self._streams:
                self._read_pmt(buf[start:end])
            return
        stream = self._streams.get(pid)
        if stream is None:
            return
        if pusi:
            if stream.first_au is not None and stream.pes_count:
                self._finish_first_au(stream)
            self._read_pes(stream, buf, start, end)
        else:
            if stream.first_au is not None and stream.pes_count:
                self._collect(stream, buf[start:end])
            if stream.adts is not None:
                stream.adts.feed(buf[start:end])

    def _collect(self, stream: _Stream, data: bytes) -> None:
        assert stream.first_au is not None
        stream.first_au += data
        if len(stream.first_au) >= FIRST_AU_LIMIT:
            self._finish_first_au(stream)

    def _finish_first_au(self, stream: _Stream) -> None:
        """Judge the collected first access unit; only AAC streams stay followed packet by packet."""
        stream.judge_first_au()
        if stream.adts is None:
            self._collecting.discard(stream.pid)

    def _read_pat(self, section: bytes) -> None:
        table = _section(section, table_id=0x00)
        if table is None:
            return
        self._has_pat = True
        for i in range(0, len(table) - 3, 4):
            program = (table[i] << 8) | table[i + 1]
            if program != 0:
                self._pmt_pid = ((table[i + 2] & 0x1F) << 8) | table[i + 3]
                return

    def _read_pmt(self, section: bytes) -> None:
        table = _section(section, table_id=0x02)
        if table is None or len(table) < 4:
            return
        info_len = ((table[2] & 0x0F) << 8) | table[3]
        i = 4 + info_len
        while i + 5 <= len(table):
            stream_type = table[i]
            pid = ((table[i + 1] & 0x1F) << 8) | table[i + 2]
            es_info = ((table[i + 3] & 0x0F) << 8) | table[i + 4]
            if pid not in self._streams and pid not in (PAT_PID, NULL_PID, self._pmt_pid):
                stream = _Stream(pid, stream_type)
                self._streams[pid] = stream
                if stream.kind == "video" or stream.adts is not None:
                    self._collecting.add(pid)
            i += 5 + es_info

    def _read_pes(self, stream: _Stream, buf: bytes, start: int, end: int) -> None:
        begin = _pes_header(stream, buf, start, end)
        if begin < 0:
            return
        es = buf[begin:end]
        if stream.first_au is not None:
            self._collect(stream, es)
        elif stream.width is None:  # the SPS may only come with a later keyframe
            stream.look_for_sps(es)
        if stream.adts is not None:
            stream.adts.start_pes()
            stream.adts.feed(es)
            if stream.sample_rate is None:
                header = adts_header(es)
                if header:
                    stream.sample_rate, stream.channels = header

    def close(self) -> SliceMedia:
        """Finish reading and describe the slice."""
        for pid in tuple(self._collecting):
            stream = self._streams[pid]
            if stream.first_au is not None and stream.pes_count:
                stream.judge_first_au()
        self._collecting.clear()
        trailing = len(self._carry)
        return SliceMedia(
            size=self._size,
            packets=self._n.packets,
            skipped_bytes=self._n.skipped,
            resyncs=self._n.resyncs,
            trailing_bytes=trailing,
            has_pat=self._has_pat,
            has_pmt=bool(self._streams),
            streams=tuple(self._streams[pid].facts() for pid in sorted(self._streams)),
            cc_errors=tuple(sorted(self._cc_errors.items())),
            transport_errors=self._n.transport_errors,
        )


_TEI = bytes(range(0x80, 0x100))
"""Header byte 1 values with transport_error_indicator set."""
_PUSI = bytes(0xFF if v & 0x40 else 0 for v in range(256))
_PAYLOAD = bytes(0xFF if v & 0x10 else 0 for v in range(256))
"""Header byte 3 → 0xFF for packets that carry a payload."""
_PID_HIGH = bytes(v & 0x1F for v in range(256))
_COUNTER = bytes(0x10 | (v & 0x0F) if v & 0x10 else 0 for v in range(256))
"""Header byte 3 → its continuity counter, marked with 0x10, for packets that carry a payload; else 0."""
_COUNTING = bytes(range(0x10, 0x20)) * (1 + 8192 // 16)
_NOT_ZERO = re.compile(rb"[^\x00]")


def _counting(first: int, length: int) -> bytes:
    """The marked counters ``length`` packets in a row carry, starting at ``first``."""
    if first + length <= len(_COUNTING):
        return _COUNTING[first : first + length]
    return bytes(0x10 | ((first + i) & 0x0F) for i in range(length))


def _marked(flags: bytes, after: int = 0) -> list[int]:
    """The indexes of the 0xFF bytes of ``flags`` from ``after`` (≥ 0) on: the lengths of the runs of
    zeros between them, added up (a few calls in C, where a regular expression made a match object for
    each). Every byte of ``flags`` must be 0xFF or 0, as the ``_Heads`` masks are: another byte would
    count as zeros."""
    gaps = (flags[after:] if after else flags).split(b"\xff")
    gaps.pop()  # the zeros after the last one
    return list(map(operator.add, itertools.accumulate(map(len, gaps)), itertools.count(after)))


def _equals(values: bytes, value: int) -> bytes:
    """0xFF where ``values`` holds ``value``, else 0."""
    return values.translate(_EQUALS[value])


_EQUALS = tuple(bytes(value) + b"\xff" + bytes(255 - value) for value in range(256))


class _Heads:
    """The header bytes 1–3 of a run of packets, each as one byte string (one byte per packet)."""

    __slots__ = ("_counters", "_masks", "_pids", "b1", "b2", "b3", "count")

    def __init__(self, buf: bytes, start: int, end: int) -> None:
        self.b1 = buf[start + 1 : end : PACKET]
        self.b2 = buf[start + 2 : end : PACKET]
        self.b3 = buf[start + 3 : end : PACKET]
        self.count = len(self.b1)
        self._pids: list[int] | None = None
        self._masks: dict[int, int] = {}
        self._counters: int | None = None

    def transport_errors(self) -> int:
        return self.count - len(self.b1.translate(None, _TEI))

    def pid_list(self) -> list[int]:
        """Every packet's PID."""
        if self._pids is None:
            both = array.array("H", bytes(2 * self.count))
            raw = memoryview(both).cast("B")
            high, low = (1, 0) if sys.byteorder == "little" else (0, 1)
            raw[high::2] = self.b1.translate(_PID_HIGH)
            raw[low::2] = self.b2
            self._pids = both.tolist()
        return self._pids

    def pids(self) -> list[int]:
        """The PIDs present, in order of first appearance: take the first packet's PID, set its packets
        aside (one mask), and again with the rest (a few passes in C instead of one per packet)."""
        found: list[int] = []
        rest = (1 << (8 * self.count)) - 1
        while rest:
            if len(found) == MANY_PIDS:  # not a recording's few streams: one pass over every packet
                return list(dict.fromkeys(self.pid_list()))
            left = _NOT_ZERO.search(rest.to_bytes(self.count))
            assert left is not None
            index = left.start()
            pid = ((self.b1[index] & 0x1F) << 8) | self.b2[index]
            found.append(pid)
            rest &= ~self.mask(pid)
        return found

    def mask(self, pid: int) -> int:
        """A big integer with 0xFF in the bytes of the packets of ``pid`` (in packet order)."""
        mask = self._masks.get(pid)
        if mask is None:
            high = int.from_bytes(_equals(self.b1.translate(_PID_HIGH), pid >> 8))
            mask = high & int.from_bytes(_equals(self.b2, pid & 0xFF))
            self._masks[pid] = mask
        return mask

    def counters(self, pid: int) -> bytes:
        """The marked continuity counters of ``pid``'s packets that carry a payload, in order."""
        if self._counters is None:
            self._counters = int.from_bytes(self.b3.translate(_COUNTER))
        marked = self._counters & self.mask(pid)
        return marked.to_bytes(self.count).translate(None, b"\x00")

    def starts(self) -> int:
        """A big integer with 0xFF in the bytes of the packets that start a unit (PES or section)."""
        return int.from_bytes(self.b1.translate(_PUSI))

    def wanted(self, collecting: frozenset[int]) -> bytes:
        """Non-zero for each packet that starts a unit or belongs to a PID in ``collecting``."""
        chosen = self.starts()
        for pid in collecting:
            chosen |= self.mask(pid)
        return chosen.to_bytes(self.count)


def _pes_timestamps(
    stream: _Stream, buf: bytes, start: int, heads: _Heads, *, after: int
) -> list[tuple[int, int]]:
    """Count the PES that ``stream``'s packets begin from packet ``after`` on and keep their timestamp
    fields, as ``TsReader._payload`` and ``_read_pes`` do; ``(packet index, where its elementary-stream
    bytes start)`` of each. A packet without a valid PES header begins none.

    The headers are read together (``_pes_in_bulk``) when every one of them is whole and well formed,
    as a recording's are; otherwise one at a time."""
    b3 = heads.b3
    units = heads.mask(stream.pid) & heads.starts() & int.from_bytes(b3.translate(_PAYLOAD))
    indexes = _marked(units.to_bytes(heads.count), after)
    begun = _pes_in_bulk(stream, buf, start, b3, indexes)
    if begun is not None:
        return begun
    begun = []
    for index in indexes:
        off = start + index * PACKET
        begin = _pes_header(stream, buf, _payload_start(buf, off, b3[index]), off + PACKET)
        if begin >= 0:
            begun.append((index, begin))
    return begun


PES_HEAD = 19
"""Bytes of a PES header from its start code to the end of a DTS field."""
_PTS_FLAG = bytes(range(0x80, 0x100))
"""PES header flag bytes that announce a PTS."""
_NO_DTS_FLAG = bytes(v for v in range(0x100) if not v & 0x40)
"""PES header flag bytes that announce no DTS."""


def _pes_in_bulk(
    stream: _Stream, buf: bytes, start: int, b3: bytes, indexes: list[int]
) -> list[tuple[int, int]] | None:
    """``_pes_timestamps`` for the packets at ``indexes`` (each with a payload) when each begins a PES
    header with a PTS that its packet holds whole, room for a DTS field included: their first
    ``PES_HEAD`` bytes are joined and checked and read as strided slices. None, with nothing counted,
    when any of them is not such a header (then they are read one by one)."""
    if not indexes:
        return []
    after_header = [start + index * PACKET + 4 for index in indexes]  # an adaptation field, or the payload
    fields = [buf[at] + 1 if b3[i] & 0x20 else 0 for at, i in zip(after_header, indexes, strict=True)]
    if max(fields) > PACKET - 4 - PES_HEAD:  # an adaptation field leaves no room for the header
        return None
    at = list(map(operator.add, after_header, fields))
    joined = b"".join([buf[p : p + PES_HEAD] for p in at])
    count = len(at)
    flags, lengths = joined[7::PES_HEAD], joined[8::PES_HEAD]
    if (
        joined[0::PES_HEAD] != bytes(count)
        or joined[1::PES_HEAD] != bytes(count)
        or joined[2::PES_HEAD] != b"\x01" * count
        or flags.translate(None, _PTS_FLAG)
        or max(map(operator.add, lengths, fields)) > PACKET - 4 - 9  # the header overruns its packet
    ):
        return None
    stream.pes_count += count
    stream.new_pts.extend([joined[i : i + 5] for i in range(9, len(joined), PES_HEAD)])
    if not flags.translate(None, _NO_DTS_FLAG):  # the usual case: no DTS at all
        stream.new_dts.extend([None] * count)
    else:
        stream.new_dts.extend(
            [
                joined[i * PES_HEAD + 14 : (i + 1) * PES_HEAD] if flag & 0x40 and length >= 10 else None
                for i, (flag, length) in enumerate(zip(flags, lengths, strict=True))
            ]
        )
    return list(zip(indexes, [p + 9 + length for p, length in zip(at, lengths, strict=True)], strict=True))


def _payload_start(buf: bytes, off: int, flags: int) -> int:
    """Where the payload of the packet at ``off`` starts (``flags``: its header byte 3), past any
    adaptation field."""
    return off + 4 + (1 + buf[off + 4] if flags & 0x20 else 0)


def _pes_header(stream: _Stream, buf: bytes, p: int, end: int) -> int:
    """Read the PES header at ``p`` (its packet's payload ends at ``end``): count the PES and keep its
    timestamp fields; where its elementary-stream bytes start, or -1 when it is not a PES header with
    a PTS (nothing is counted then)."""
    if end - p < 14 or buf[p : p + 3] != b"\x00\x00\x01":
        return -1
    flags = buf[p + 7]
    header_len = buf[p + 8]
    if not flags & 0x80 or 9 + header_len > end - p:
        return -1
    stream.pes_count += 1
    stream.new_pts.append(buf[p + 9 : p + 14])
    stream.new_dts.append(buf[p + 14 : p + 19] if flags & 0x40 and header_len >= 10 else None)
    return p + 9 + header_len


_SLOT = b"\x00\x00\x00"
"""Widens a 5-byte timestamp field to an 8-byte word."""
_FIELD_MASKS = (
    (3, bytes.fromhex("00000001c0000000")),
    (2, bytes.fromhex("000000003fff8000")),
    (1, bytes.fromhex("0000000000007fff")),
)
"""How ``read_pts`` takes each run of bits out of a field: shift right, then mask (per 8-byte word)."""


def _decode_timestamps(fields: list[bytes]) -> list[int]:
    """The 33-bit values of 5-byte PTS/DTS fields, decoded together: the fields are laid out as 8-byte
    words of one big integer, and ``read_pts``'s shifts and masks applied to all of them at once (a
    shift carries a word's low bits only into the next word's top bits, which every mask clears)."""
    count = len(fields)
    packed = int.from_bytes(_SLOT + _SLOT.join(fields))
    value = 0
    for shift, mask in _FIELD_MASKS:
        value |= (packed >> shift) & int.from_bytes(mask * count)
    words = array.array("Q", value.to_bytes(8 * count))
    if sys.byteorder == "little":
        words.byteswap()
    return words.tolist()


def _section(payload: bytes, *, table_id: int) -> bytes | None:
    """The body of a PSI section (after the 8-byte header, before the CRC) starting in ``payload``."""
    if not payload:
        return None
    at = 1 + payload[0]  # pointer_field
    if at + 8 > len(payload) or payload[at] != table_id:
        return None
    length = ((payload[at + 1] & 0x0F) << 8) | payload[at + 2]
    body_end = min(at + 3 + length - 4, len(payload))
    if body_end < at + 8:
        return None
    return payload[at + 8 : body_end]


def read_slice(chunks: Iterable[bytes]) -> SliceMedia:
    """Read a whole slice given as chunks."""
    reader = TsReader()
    for chunk in chunks:
        reader.feed(chunk)
    return reader.close()


def read_slice_file(path: Path, *, chunk: int = READ_CHUNK) -> SliceMedia:
    """Read a slice from a local file."""
    with path.open("rb") as fh:
        return read_slice(iter(lambda: fh.read(chunk), b""))
