"""Build a regular MP4's ``moov`` from a fragmented MP4's empty one and its sample tables. Pure.

The fragmented ``moov`` already says everything but the samples: track headers, codecs (``stsd``),
edit lists with each track's start offset (ffmpeg's ``delay_moov``). What changes, box by box::

    moov ─┬─ mvhd        duration = the longest track
          ├─ trak ─┬─ tkhd                 duration = its edit list (movie timescale)
          │        ├─ edts ── elst         the open-ended edit gets the media's length
          │        └─ mdia ─┬─ mdhd        duration = sum of the sample durations
          │                 └─ minf ── stbl ─┬─ stsd      kept
          │                                  ├─ stts  stss  ctts  stsc  stsz  stco|co64   built
          │                                  └─ sgpd  sbgp        AAC: one frame of pre-roll
          ├─ mvex        dropped (nothing is fragmented any more)
          └─ udta ...    kept

Fields are laid out as ffmpeg writes them for a regular MP4, so the result plays exactly like
ffmpeg's own regular output of the same input (tested packet by packet).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pipeline.model.exceptions import MediaError
from stages.media.fragments import SampleTable, all_equal
from stages.media.mp4 import unpack

CONTAINERS = frozenset({"moov", "trak", "mdia", "minf", "stbl"})
"""Boxes recpipe descends into; every other box is kept or replaced whole."""
BUILT = frozenset({"stts", "stss", "ctts", "stsc", "stsz", "stz2", "stco", "co64"})
"""Sample-table boxes replaced by the ones built from the fragments."""
U32 = 1 << 32

ChunkOffset = Callable[[int], int]
"""Where a chunk that starts at this offset of the fragmented file lies in the published file."""


@dataclass(frozen=True, slots=True)
class Node:
    """One box: a leaf's ``payload`` (after the 8-byte header), or a container's ``children``."""

    type: str
    payload: bytes = b""
    children: tuple[Node, ...] | None = None


def parse_tree(data: bytes, start: int = 0, end: int | None = None) -> tuple[Node, ...]:
    """The boxes in ``data[start:end]``, containers opened."""
    end = len(data) if end is None else end
    nodes, offset = [], start
    while offset < end:
        if offset + 8 > end:
            raise MediaError(f"truncated box header at offset {offset} of the moov")
        size, raw = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            (size,) = unpack(">Q", data, offset + 8)
            header = 16
        if size < header or offset + size > end:
            raise MediaError(f"box of {size} bytes at offset {offset} does not fit in the moov")
        kind = raw.decode("latin-1")
        body = (offset + header, offset + size)
        if kind in CONTAINERS:
            nodes.append(Node(kind, children=parse_tree(data, *body)))
        else:
            nodes.append(Node(kind, payload=data[body[0] : body[1]]))
        offset += size
    return tuple(nodes)


def serialize(nodes: Iterable[Node]) -> bytes:
    """The bytes of ``nodes``."""
    return b"".join(
        box(n.type, serialize(n.children) if n.children is not None else n.payload) for n in nodes
    )


def box(kind: str, payload: bytes) -> bytes:
    """A box of type ``kind`` around ``payload`` (64-bit size when needed)."""
    size = 8 + len(payload)
    if size >= U32:
        return struct.pack(">I4sQ", 1, kind.encode("latin-1"), size + 8) + payload
    return struct.pack(">I4s", size, kind.encode("latin-1")) + payload


def full(version: int, flags: int = 0) -> bytes:
    """A full box's version and flags."""
    return struct.pack(">I", version << 24 | flags)


def child(node: Node, kind: str) -> Node:
    """The first child of type ``kind``; MediaError if there is none."""
    for c in node.children or ():
        if c.type == kind:
            return c
    raise MediaError(f"{node.type} has no {kind} box")


def rescale(value: int, *, from_scale: int, to_scale: int) -> int:
    """``value`` in another timescale, rounded up (as ffmpeg does for track durations)."""
    return -(-value * to_scale // from_scale)


# --- headers -----------------------------------------------------------------------------------


def timing(payload: bytes, *, before: int) -> tuple[bytes, int, int, bytes]:
    """Split an ``mvhd``/``mdhd``/``tkhd`` payload: ``(fields before the timescale/duration pair,
    timescale or track id, duration, the rest)`` with times widened to 64 bits. ``before`` is how
    many 32-bit (v0) time fields precede: 2 (creation, modification)."""
    version = payload[0] if payload else -1
    if version == 1:
        times = unpack(f">{before}Q", payload, 4)
        middle, duration = unpack(">IQ", payload, 4 + 8 * before)
        rest = payload[4 + 8 * before + 12 :]
    elif version == 0:
        times = unpack(f">{before}I", payload, 4)
        middle, duration = unpack(">II", payload, 4 + 4 * before)
        rest = payload[4 + 4 * before + 8 :]
    else:
        raise MediaError(f"unsupported header box version {version}")
    return struct.pack(f">{before}Q", *times), middle, duration, rest


def with_duration(payload: bytes, duration: int) -> bytes:
    """An ``mvhd``/``mdhd`` payload with ``duration`` (version 1 only when it needs 64 bits)."""
    times, scale, _, rest = timing(payload, before=2)
    created, modified = struct.unpack(">QQ", times)
    flags = payload[1:4]
    if max(created, modified, duration) < U32:
        return bytes([0]) + flags + struct.pack(">IIII", created, modified, scale, duration) + rest
    return bytes([1]) + flags + struct.pack(">QQIQ", created, modified, scale, duration) + rest


def tkhd_with_duration(payload: bytes, duration: int) -> bytes:
    """A ``tkhd`` payload with ``duration``: its track id and reserved word sit before it."""
    version = payload[0] if payload else -1
    flags = payload[1:4]
    if version == 1:
        created, modified, track_id, reserved, _ = unpack(">QQIIQ", payload, 4)
        rest = payload[4 + 32 :]
    elif version == 0:
        created, modified, track_id, reserved, _ = unpack(">IIIII", payload, 4)
        rest = payload[4 + 20 :]
    else:
        raise MediaError(f"unsupported tkhd version {version}")
    if max(created, modified, duration) < U32:
        return (
            bytes([0]) + flags + struct.pack(">IIIII", created, modified, track_id, reserved, duration) + rest
        )
    return bytes([1]) + flags + struct.pack(">QQIIQ", created, modified, track_id, reserved, duration) + rest


def track_id_of(trak: Node) -> int:
    """The track id in a ``trak``'s ``tkhd``."""
    payload = child(trak, "tkhd").payload
    (track_id,) = unpack(">I", payload, 4 + (16 if payload[:1] == b"\x01" else 8))
    return int(track_id)


# --- edit lists --------------------------------------------------------------------------------

Edit = tuple[int, int, bytes]
"""``(segment duration in the movie timescale, media time or -1 for an empty edit, rate)``."""


def read_elst(payload: bytes) -> list[Edit]:
    """The entries of an ``elst`` payload."""
    version = payload[0] if payload else -1
    if version not in (0, 1):
        raise MediaError(f"unsupported elst version {version}")
    (count,) = unpack(">I", payload, 4)
    fmt = ">Qq4s" if version == 1 else ">Ii4s"
    width = struct.calcsize(fmt)
    if 8 + count * width > len(payload):
        raise MediaError(f"elst claims {count} entries, more than it holds")
    return [struct.unpack_from(fmt, payload, 8 + i * width) for i in range(count)]


def elst_payload(edits: Sequence[Edit]) -> bytes:
    """An ``elst`` payload (version 1 only when a value needs 64 bits)."""
    wide = any(d >= U32 or not -(1 << 31) <= t < 1 << 31 for d, t, _ in edits)
    fmt = ">Qq4s" if wide else ">Ii4s"
    return (
        full(1 if wide else 0) + struct.pack(">I", len(edits)) + b"".join(struct.pack(fmt, *e) for e in edits)
    )


def complete_edits(edits: Sequence[Edit], *, table: SampleTable, scale: int, movie_scale: int) -> list[Edit]:
    """The fragmented file's edit list with its open-ended edit given the media's length.

    ffmpeg's fragmented ``moov`` is written before the media's length is known: its edits play
    "from media time t to the end", with duration 0. A first decode time other than 0 is added to
    the leading empty edit (ffmpeg starts every track at 0, so this is a safeguard)."""
    media = table.duration
    done = [
        (rescale(max(media - t, 0), from_scale=scale, to_scale=movie_scale), t, rate)
        if t >= 0 and d == 0
        else (d, t, rate)
        for d, t, rate in edits
    ]
    lead = rescale(table.start or 0, from_scale=scale, to_scale=movie_scale)
    if lead and done and done[0][1] == -1:
        done[0] = (done[0][0] + lead, -1, done[0][2])
    elif lead:
        done.insert(0, (lead, -1, struct.pack(">HH", 1, 0)))
    return done


# --- sample tables -----------------------------------------------------------------------------


def be32(values: Iterable[int], typecode: str = "I") -> bytes:
    """Big-endian bytes of 32-bit values."""
    table = array(typecode, values)
    table.byteswap()
    return table.tobytes()


def runs_payload(runs: Sequence[Sequence[int]], *, version: int = 0) -> bytes:
    """``stts``/``ctts`` payload: ``[count, value]`` runs."""
    flat = [v for run in runs for v in run]
    return (
        full(version)
        + struct.pack(">I", len(runs))
        + struct.pack(f">{len(flat)}{'i' if version else 'I'}", *flat)
    )


def stsz_payload(sizes: array[int]) -> bytes:
    """``stsz``: one size for all samples when they are equal, else the table."""
    if sizes and all_equal(sizes):
        return full(0) + struct.pack(">II", sizes[0], len(sizes))
    return full(0) + struct.pack(">II", 0, len(sizes)) + be32(sizes)


def chunk_offsets_box(offsets: Sequence[int], *, wide: bool) -> Node:
    """``stco`` (32-bit) or ``co64`` chunk offsets."""
    if wide:
        table = array("Q", offsets)
        table.byteswap()
        return Node("co64", full(0) + struct.pack(">I", len(offsets)) + table.tobytes())
    if offsets and max(offsets) >= U32:
        raise MediaError("chunk offset past 4 GiB in a 32-bit table")
    return Node("stco", full(0) + struct.pack(">I", len(offsets)) + be32(offsets))


def sample_boxes(table: SampleTable, *, codec: str, where: ChunkOffset, wide: bool) -> list[Node]:
    """The sample-table boxes after ``stsd``, in ffmpeg's order."""
    boxes = [Node("stts", runs_payload(table.durations))]
    if not table.all_sync:
        boxes.append(Node("stss", full(0) + struct.pack(">I", len(table.sync)) + be32(table.sync)))
    if any(value for _, value in table.offsets):
        signed = any(value < 0 for _, value in table.offsets)
        boxes.append(Node("ctts", runs_payload(table.offsets, version=1 if signed else 0)))
    per_chunk = [v for entry in table.per_chunk for v in entry]
    boxes.append(Node("stsc", full(0) + struct.pack(">I", len(table.per_chunk)) + be32(per_chunk)))
    boxes.append(Node("stsz", stsz_payload(table.sizes)))
    boxes.append(chunk_offsets_box([where(at) for at in table.chunks], wide=wide))
    if codec == "mp4a" and table.sample_count:  # AAC: decoding a sample needs the one before it
        boxes.append(Node("sgpd", full(1) + b"roll" + struct.pack(">IIh", 2, 1, -1)))
        boxes.append(Node("sbgp", full(0) + b"roll" + struct.pack(">III", 1, table.sample_count, 1)))
    return boxes


def codec_of(stbl: Node) -> str:
    """The first sample entry's fourcc."""
    payload = child(stbl, "stsd").payload
    return payload[12:16].decode("latin-1") if len(payload) >= 16 else ""


# --- assembling --------------------------------------------------------------------------------


def replace_children(node: Node, change: Callable[[Node], Node | list[Node] | None]) -> Node:
    """``node`` with each child replaced by ``change(child)`` (None drops it, a list splices)."""
    out: list[Node] = []
    for c in node.children or ():
        new = change(c)
        if isinstance(new, list):
            out += new
        elif new is not None:
            out.append(new)
    return Node(node.type, children=tuple(out))


def regular_trak(
    trak: Node, table: SampleTable, *, movie_scale: int, where: ChunkOffset, wide: bool
) -> tuple[Node, int]:
    """A ``trak`` with its samples; returns it and its duration in the movie timescale."""
    mdia = child(trak, "mdia")
    _, scale, _, _ = timing(child(mdia, "mdhd").payload, before=2)
    if not scale:
        raise MediaError("a track's timescale is zero")
    stbl = child(child(mdia, "minf"), "stbl")
    codec = codec_of(stbl)
    edts = next((c for c in trak.children or () if c.type == "edts"), None)
    edits: list[Edit] = []
    if edts is not None:
        elst = parse_tree(edts.payload)
        edits = read_elst(next(n for n in elst if n.type == "elst").payload) if elst else []
    if edits or table.start:
        edits = complete_edits(edits, table=table, scale=scale, movie_scale=movie_scale)
    length = (
        sum(d for d, _, _ in edits)
        if edits
        else rescale(table.duration, from_scale=scale, to_scale=movie_scale)
    )

    def new_stbl(c: Node) -> Node | list[Node] | None:
        if c.type == "stsd":
            return [c, *sample_boxes(table, codec=codec, where=where, wide=wide)]
        if c.type in BUILT or (c.type in ("sgpd", "sbgp") and codec == "mp4a"):
            return None
        return c

    def new_minf(c: Node) -> Node:
        return replace_children(c, new_stbl) if c.type == "stbl" else c

    def new_mdia(c: Node) -> Node:
        if c.type == "mdhd":
            return Node("mdhd", with_duration(c.payload, table.duration))
        return replace_children(c, new_minf) if c.type == "minf" else c

    def new_trak(c: Node) -> Node | list[Node] | None:
        if c.type == "tkhd":
            out = [Node("tkhd", tkhd_with_duration(c.payload, length))]
            if edits and edts is None:
                out.append(Node("edts", box("elst", elst_payload(edits))))
            return out
        if c.type == "edts":
            return Node("edts", box("elst", elst_payload(edits)))
        return replace_children(c, new_mdia) if c.type == "mdia" else c

    return replace_children(trak, new_trak), length


def regular_moov(moov: bytes, tables: dict[int, SampleTable], *, where: ChunkOffset, wide: bool) -> bytes:
    """The regular ``moov`` box for a fragmented file's ``moov`` and its tracks' samples."""
    (root,) = parse_tree(moov)
    if root.type != "moov":
        raise MediaError(f"expected a moov box, found {root.type!r}")
    movie_scale = timing(child(root, "mvhd").payload, before=2)[1]
    if not movie_scale:
        raise MediaError("the movie timescale is zero")
    traks: dict[int, tuple[Node, int]] = {}
    for c in root.children or ():
        if c.type == "trak":
            track_id = track_id_of(c)
            table = tables.get(track_id) or SampleTable(track_id)
            traks[id(c)] = regular_trak(c, table, movie_scale=movie_scale, where=where, wide=wide)
    longest = max((length for _, length in traks.values()), default=0)

    def new_moov(c: Node) -> Node | None:
        if c.type == "mvhd":
            return Node("mvhd", with_duration(c.payload, longest))
        if c.type == "mvex":
            return None
        return traks[id(c)][0] if c.type == "trak" else c

    return serialize([replace_children(root, new_moov)])


def brands(moov: bytes) -> bytes:
    """ffmpeg's ``ftyp`` for a regular MP4 with these tracks."""
    (root,) = parse_tree(moov)
    codecs = {
        codec_of(child(child(child(t, "mdia"), "minf"), "stbl"))
        for t in root.children or ()
        if t.type == "trak"
    }
    compatible = [b"isom", b"iso2", *([b"avc1"] if "avc1" in codecs else []), b"mp41"]
    return box("ftyp", b"isom" + struct.pack(">I", 512) + b"".join(compatible))
