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

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.model.media import TICKS_PER_S, SliceMedia, StreamFacts, StreamKind, unwrap
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
AAC_FRAME_SAMPLES = 1024

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
    """Counts the ADTS frames of the PES being read, across packet boundaries (for the last PES's length)."""

    __slots__ = ("frames", "head", "last_frames", "lost", "skip")

    def __init__(self) -> None:
        self.frames = 0
        self.last_frames = 0
        self.skip = 0
        self.head = b""
        self.lost = False

    def start_pes(self) -> None:
        self.last_frames, self.frames = self.frames, 0
        self.skip, self.head, self.lost = 0, b"", False

    def feed(self, data: bytes) -> None:
        if self.lost:
            return
        if self.skip >= len(data):
            self.skip -= len(data)
            return
        if self.head:
            data, self.head = self.head + data, b""
        pos = self.skip
        while pos + 7 <= len(data):
            length = ((data[pos + 3] & 0x03) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
            if data[pos] != 0xFF or data[pos + 1] & 0xF6 != 0xF0 or length < 7:
                self.lost = True
                return
            self.frames += 1
            pos += length
        self.skip = max(0, pos - len(data))
        self.head = data[pos:] if pos < len(data) else b""

    @property
    def pes_frames(self) -> int:
        """Frames in the last complete PES (or the one in progress at the end)."""
        return self.frames or self.last_frames


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
        "pes_count",
        "pid",
        "raw_dts",
        "raw_pts",
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
        self.raw_pts: int | None = None
        self.raw_dts: int | None = None
        self.frame_ticks: int | None = None
        self.keyframe: bool | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self.first_au: bytearray | None = bytearray() if self.kind == "video" else None
        """Bytes of the first video PES, while it is being collected; None once judged."""
        self.adts = _Adts() if self.codec == "aac" else None

    def timestamps(self, pts: int, dts: int | None) -> None:
        previous = self.last_pts
        pts = unwrap(pts, previous)
        self.pes_count += 1
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
            dts = unwrap(dts, self.last_dts if self.last_dts is not None else pts)
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
        end = start + count * PACKET
        cc, cc_errors = self._cc, self._cc_errors
        collecting = self._collecting
        off = start
        for b1, b2, b3 in zip(
            buf[start + 1 : end : PACKET],
            buf[start + 2 : end : PACKET],
            buf[start + 3 : end : PACKET],
            strict=True,
        ):
            pid = ((b1 & 0x1F) << 8) | b2
            if b1 & 0x80:
                self._n.transport_errors += 1
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
            if b1 & 0x40 or pid in collecting:
                self._payload(buf, off, pid, pusi=bool(b1 & 0x40), b3=b3)
            off += PACKET
        self._n.packets += count

    @staticmethod
    def _discontinuity_flag(buf: bytes, off: int, b3: int) -> bool:
        """Whether the packet's adaptation field sets discontinuity_indicator (a legal CC jump)."""
        return bool(b3 & 0x20) and buf[off + 4] > 0 and bool(buf[off + 5] & 0x80)

    def _payload(self, buf: bytes, off: int, pid: int, *, pusi: bool, b3: int) -> None:
        if not b3 & 0x10:
            return
        start = off + 4
        if b3 & 0x20:
            start += 1 + buf[off + 4]
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
        p = start
        if end - p < 14 or buf[p] or buf[p + 1] or buf[p + 2] != 1:
            return
        flags = buf[p + 7]
        header_len = buf[p + 8]
        if not flags & 0x80 or 9 + header_len > end - p:
            return
        dts = read_pts(buf, p + 14) if flags & 0x40 and header_len >= 10 else None
        stream.timestamps(read_pts(buf, p + 9), dts)
        es = buf[p + 9 + header_len : end]
        if stream.first_au is not None:
            self._collect(stream, es)
        else:  # the SPS may only come with a later keyframe
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
