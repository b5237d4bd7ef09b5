"""Just enough H.264 (ITU-T H.264 / ISO 14496-10 Annex B) to verify slices: NAL types and the SPS size.

Input is hostile: every function returns None or stops early on short or malformed data and
never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)

NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
VCL_TYPES = frozenset(range(1, 6))
"""Coded slice NAL unit types: the first one in an access unit says whether it is a keyframe."""
HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
"""Profiles whose SPS carries chroma format, bit depth and scaling matrices (7.3.2.1.1)."""
MAX_SPS_BYTES = 512
HEVC_KEYFRAME_TYPES = frozenset(range(16, 22))
"""HEVC IRAP NAL unit types (BLA, IDR, CRA): random access points."""


def nal_units(data: bytes) -> Iterator[tuple[int, int]]:
    """``(offset of the NAL header, nal_unit_type)`` for each Annex B start code in ``data``."""
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        yield pos + 3, data[pos + 3] & 0x1F
        pos = data.find(b"\x00\x00\x01", pos + 3)


def first_picture_is_idr(data: bytes) -> bool | None:
    """Whether the first coded slice in ``data`` is IDR; None when ``data`` holds no coded slice."""
    for _, kind in nal_units(data):
        if kind in VCL_TYPES:
            return kind == NAL_IDR
    return None


def hevc_first_picture_is_irap(data: bytes) -> bool | None:
    """HEVC: whether the first coded picture in ``data`` is a random access point (IRAP)."""
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        kind = (data[pos + 3] >> 1) & 0x3F
        if kind < 32:  # VCL NAL units
            return kind in HEVC_KEYFRAME_TYPES
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return None


def find_sps(data: bytes) -> bytes | None:
    """The first SPS NAL unit's payload (after the header byte) in ``data``, if any."""
    for offset, kind in nal_units(data):
        if kind == NAL_SPS:
            end = data.find(b"\x00\x00\x01", offset)
            return data[offset + 1 : end if end != -1 else offset + 1 + MAX_SPS_BYTES]
    return None


def unescape(rbsp: bytes) -> bytes:
    """Remove emulation prevention bytes (``00 00 03`` → ``00 00``)."""
    return rbsp.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    """An MSB-first bit reader that raises ``EOFError`` past the end."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self._left:
            raise EOFError
        self._left -= n
        return (self._value >> self._left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise EOFError
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + bits.se() + 256) % 256
        last = nxt or last


def sps_resolution(sps: bytes) -> tuple[int, int] | None:
    """``(width, height)`` in pixels after cropping, from an SPS payload; None if it cannot be read."""
    try:
        return _resolution(_Bits(unescape(sps[:MAX_SPS_BYTES])))
    except EOFError:
        return None


def _resolution(bits: _Bits) -> tuple[int, int] | None:
    profile_idc = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_planes = 1, 0
    if profile_idc in HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma_format_idc == 3 else 8):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(min(bits.ue(), 255)):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)
    chroma_array_type = 0 if separate_planes else chroma_format_idc
    sub_w, sub_h = {1: (2, 2), 2: (2, 1), 3: (1, 1)}.get(chroma_array_type, (1, 1))
    unit_x = 1 if chroma_array_type == 0 else sub_w
    unit_y = (2 - frame_mbs_only) * (1 if chroma_array_type == 0 else sub_h)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_map_units * 16 - unit_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        return None
    return width, height
