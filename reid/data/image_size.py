"""An image's size from its file header, read before anything decodes it.

Decoding allocates width x height x 3 bytes and more: one 10000x10000 file took 2.2 GB to
index. Person crops and camera frames are far smaller, so files over :data:`MAX_IMAGE_PIXELS`
are refused by their header (as Pillow's decompression-bomb check does) instead of decoded.
Covers the formats the pipeline decodes (JPEG, PNG, GIF, BMP); other bytes give ``None`` and are
left to the decoder to refuse.
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import BinaryIO

#: 50 megapixels: an 8K frame is 33; a crop is a few hundred thousand at most.
MAX_IMAGE_PIXELS = 50_000_000

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_SCAN_LIMIT = 1 << 20  # the frame header comes before the image data, near the start


def read_image_size(path: str | os.PathLike | BinaryIO) -> tuple[int, int] | None:
    """(width, height) from the header of a JPEG, PNG, GIF or BMP file (a path, or an open
    binary file at its start); None when unknown."""
    try:
        with (open(path, "rb") if isinstance(path, (str, os.PathLike))
              else contextlib.nullcontext(path)) as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return struct.unpack(">II", head[16:24])
            if head[:4] == b"GIF8":
                return struct.unpack("<HH", head[6:10])
            if head[:2] == b"BM" and len(head) >= 26:
                width, height = struct.unpack("<ii", head[18:26])
                return abs(width), abs(height)
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                return _jpeg_size(f)
    except (OSError, struct.error):
        return None
    return None


def _jpeg_size(f) -> tuple[int, int] | None:
    while f.tell() < _JPEG_SCAN_LIMIT:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if code in _JPEG_SOF:
            _, height, width = struct.unpack(">BHH", f.read(5))
            return width, height
        f.seek(length - 2, os.SEEK_CUR)
    return None


def oversize_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` must not be decoded (its size against the limit), or None when it may."""
    size = read_image_size(path)
    if size is None or size[0] * size[1] <= MAX_IMAGE_PIXELS:
        return None
    return (f"{size[0]}x{size[1]} pixels, over the limit of {MAX_IMAGE_PIXELS:,} "
            f"({MAX_IMAGE_PIXELS // 1_000_000} megapixels); reduce the image first")
