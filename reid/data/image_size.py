"""What decoding an image allocates, read from its file's structure before anything decodes it.

Decoding allocates width x height x 3 bytes and more: one 10000x10000 file took 2.2 GB to
index. Person crops and camera frames are far smaller, so files over :data:`MAX_IMAGE_PIXELS`
are refused by their structure (as Pillow's decompression-bomb check does) instead of decoded.

The size is the one the decoders use, which is not always the one a header states first:

* GIF: TensorFlow's decoder reads every frame (giflib holds them all) and sizes its output by
  the largest frame, whatever the logical screen says (a "16x16" file with an 8000x8000 frame
  decodes to 8000x8000); OpenCV's allocates the screen. Every block is walked (extensions and
  their sub-block chains skipped by their lengths) and the size is ``frames`` canvases of the
  larger of screen and frames: what ``tf.io.decode_gif`` returns, and more than the frames
  giflib holds.
* JPEG: libjpeg reads the frame header (SOF) wherever it sits before the first scan, skipping
  any number of segments (and stray bytes) before it; a second SOF is an error, and one after
  the first scan is never read ("two SOF markers"). Segments are walked by their lengths up to
  the first scan and the largest SOF counts.
* WebP (TensorFlow decodes it too): the canvas, times the animation's frames.
* PNG and BMP: the header, which is what their decoders allocate.

What fails closed, and what is left to the decoder: a walk cut short (a truncated file, a block
giflib refuses) counts every frame seen so far, and a GIF at least its screen. A JPEG whose
first scan is not within :data:`JPEG_MAX_MARKERS` markers, and a GIF or WebP of more than
:data:`MAX_BLOCKS` blocks, count as the largest image their format can state, so they are
refused (a walk of a file made of tiny blocks would otherwise cost a server seconds). A JPEG with no frame header before its scan, and bytes of no known
format, give ``None``: no decoder makes an image of the first (libjpeg refuses a scan without a
frame), TensorFlow's pipeline decodes the five formats above only, and :mod:`reid.data.decode`
refuses unknown formats before OpenCV (which decodes many more) sees them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
from typing import BinaryIO

#: 50 megapixels: an 8K frame is 33; a crop is a few hundred thousand at most.
MAX_IMAGE_PIXELS = 50_000_000

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, 0xD8} | set(range(0xD0, 0xD8))  # TEM, SOI, RST0-7
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
_CHUNK = 1 << 16
#: Markers read before a JPEG's first scan at most. A camera's file has a dozen; the most a
#: real one holds (an ICC profile split over 255 segments, extended XMP) is a few hundred.
#: Past this, the walk (a microsecond each in Python, while libjpeg walks them in C) stops and
#: the file counts as the largest frame a JPEG can state: 10 MB of 4-byte segments would
#: otherwise cost seconds of a server's time to find nothing.
JPEG_MAX_MARKERS = 4096
_JPEG_LARGEST = 0xFFFF  # a frame header's width and height are 16 bits
#: Blocks and sub-blocks walked in a GIF, or chunks in a WebP, at most. A GIF frame's data
#: comes in sub-blocks of up to 255 bytes, so this walks 50 MB of real image data; a file of
#: tiny blocks (10 MB of empty GIF extensions took 1.7 s) counts past it as the largest its
#: format can state, so it is refused.
MAX_BLOCKS = 200_000
_GIF_LARGEST = 0xFFFF  # a screen's and a frame's width and height are 16 bits
_WEBP_LARGEST = 0x3FFF  # VP8 and VP8L images: 14 bits

Source = str | os.PathLike | BinaryIO


@dataclasses.dataclass(frozen=True)
class DecodedSize:
    """What a decoder allocates for an image: ``frames`` canvases of ``width`` x ``height``."""

    width: int
    height: int
    frames: int = 1
    #: Why the size is an assumption rather than read (the structure was not followed to it).
    assumed: str = ""

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames

    def __str__(self) -> str:
        text = f"{self.width}x{self.height} pixels"
        if self.frames != 1:
            text = f"{self.frames} frames of {text} ({self.pixels:,} in all)"
        return f"{text} (assumed: {self.assumed})" if self.assumed else text


def decoded_size(source: Source) -> DecodedSize | None:
    """What decoding a JPEG, PNG, GIF, BMP or WebP file allocates (``source``: a path, or an open
    binary file at its start); None when the bytes are none of these, or unreadable."""
    try:
        with (open(source, "rb") if isinstance(source, (str, os.PathLike))
              else contextlib.nullcontext(source)) as f:
            head = f.read(30)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return DecodedSize(*struct.unpack(">II", head[16:24]))
            if head[:4] == b"GIF8" and len(head) >= 13:
                f.seek(13)
                return _gif_size(f, head)
            if head[:2] == b"BM" and len(head) >= 26:
                width, height = struct.unpack("<ii", head[18:26])
                return DecodedSize(abs(width), abs(height))
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                return _jpeg_size(f)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                f.seek(12)
                return _webp_size(f)
    except (OSError, struct.error):
        return None
    return None


def read_image_size(source: Source) -> tuple[int, int] | None:
    """(width, height) of what decoding the file allocates, the frames of an animation one
    under another (so width x height is always the pixels decoded: what a limit bounds);
    None when unknown. See :func:`decoded_size`."""
    size = decoded_size(source)
    return None if size is None else (size.width, size.height * size.frames)


def oversize_reason(source: Source, limit: int | None = None) -> str | None:
    """Why ``source`` must not be decoded (its decoded pixels against ``limit``, by default
    :data:`MAX_IMAGE_PIXELS`), or None when it may."""
    limit = MAX_IMAGE_PIXELS if limit is None else limit
    size = decoded_size(source)
    if size is None or size.pixels <= limit:
        return None
    return (f"{size}, over the limit of {limit:,} ({limit / 1_000_000:g} megapixels); "
            f"reduce the image first")


def _skip_sub_blocks(f: BinaryIO, most: int) -> int | None:
    """Past a GIF sub-block chain (size byte, data, ..., a zero size): how many sub-blocks it
    held (more than ``most`` when the walk stopped there), or None when truncated. Walked a
    chunk at a time (a frame's data is thousands of 255-byte sub-blocks), small ones first (an
    extension's chain is a few bytes)."""
    size, count = 256, 0
    while True:
        chunk = f.read(size)
        size = min(4 * size, _CHUNK)
        at = 0
        while at < len(chunk) and chunk[at]:
            at += chunk[at] + 1
            count += 1
            if count > most:
                return count
        if at < len(chunk):  # the terminator, inside this chunk
            f.seek(at + 1 - len(chunk), os.SEEK_CUR)
            return count
        if not chunk:
            return None
        f.seek(at - len(chunk), os.SEEK_CUR)  # the next size byte, in a later chunk


def _gif_size(f: BinaryIO, head: bytes) -> DecodedSize:
    width, height, flags = struct.unpack("<HHB", head[6:11])
    if flags & 0x80:  # the global colour table
        f.seek(3 << ((flags & 7) + 1), os.SEEK_CUR)
    frames, left = 0, MAX_BLOCKS  # blocks and sub-blocks still to walk
    while True:
        kind = f.read(1)
        if kind == b"!":  # an extension: its label, then sub-blocks
            walked = _skip_sub_blocks(f, left - 1) if f.read(1) else None
        elif kind == b",":  # an image descriptor: giflib allocates the frame right here
            descriptor = f.read(9)
            if len(descriptor) < 9:
                break
            _, _, frame_width, frame_height, packed = struct.unpack("<HHHHB", descriptor)
            frames += 1
            width, height = max(width, frame_width), max(height, frame_height)
            if packed & 0x80:  # a local colour table
                f.seek(3 << ((packed & 7) + 1), os.SEEK_CUR)
            # the LZW code size, then the data
            walked = _skip_sub_blocks(f, left - 1) if f.read(1) else None
        else:  # the trailer, the end of the file, or a block giflib refuses
            break
        if walked is None:  # truncated
            break
        left -= 1 + walked
        if left < 0:
            return DecodedSize(_GIF_LARGEST, _GIF_LARGEST, max(frames, 1),
                               assumed=f"more than {MAX_BLOCKS:,} blocks")
    return DecodedSize(width, height, max(frames, 1))


def _skip_while(f: BinaryIO, unwanted: bytes | None) -> int | None:
    """Read past bytes equal to ``unwanted`` (or, with None, past any byte but 0xFF); the
    first other byte, or None at the end. Chunked: a run of a megabyte is one search."""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return None
        if unwanted is None:
            found = chunk.find(b"\xff")
            rest = chunk[found:] if found >= 0 else b""
        else:
            rest = chunk.lstrip(unwanted)
        if rest:
            f.seek(1 - len(rest), os.SEEK_CUR)  # just past the byte returned
            return rest[0]


def _jpeg_size(f: BinaryIO) -> DecodedSize | None:
    """The largest frame header before the first scan, found as libjpeg finds it: markers read
    in turn, each segment skipped by its length, stray bytes before a marker passed over."""
    largest: DecodedSize | None = None
    for _ in range(JPEG_MAX_MARKERS):
        pair = f.read(2)
        if len(pair) < 2:
            return largest
        if pair[0] != 0xFF:  # stray bytes: on to the next 0xFF
            f.seek(-1 if pair[1] == 0xFF else 0, os.SEEK_CUR)
            if pair[1] != 0xFF and _skip_while(f, None) is None:
                return largest
            code = _skip_while(f, b"\xff")
        elif pair[1] == 0xFF:  # fill bytes
            code = _skip_while(f, b"\xff")
        else:
            code = pair[1]
        if code is None or code in (_JPEG_SOS, _JPEG_EOI):
            return largest
        if code == 0x00 or code in _JPEG_NO_LENGTH:  # 0xFF00 is a stray byte pair to libjpeg
            continue
        field = f.read(2)
        if len(field) < 2:
            return largest
        length = max(struct.unpack(">H", field)[0] - 2, 0)
        if code in _JPEG_SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return largest
            _, height, width = struct.unpack(">BHH", frame)
            if largest is None or width * height > largest.pixels:
                largest = DecodedSize(width, height)
            length = max(length - 5, 0)
        f.seek(length, os.SEEK_CUR)
    return DecodedSize(_JPEG_LARGEST, _JPEG_LARGEST, assumed=f"no scan within its first "
                                                             f"{JPEG_MAX_MARKERS:,} markers")


def _webp_size(f: BinaryIO) -> DecodedSize | None:
    """The canvas (VP8X) or the one image's size (VP8, VP8L), times the animation's frames."""
    size: DecodedSize | None = None
    frames = 0
    for _ in range(MAX_BLOCKS):
        header = f.read(8)
        if len(header) < 8:
            break
        fourcc, length = header[:4], struct.unpack("<I", header[4:])[0]
        body = f.read(min(length, 10))
        if fourcc == b"VP8X" and len(body) >= 10:
            width = 1 + int.from_bytes(body[4:7], "little")
            height = 1 + int.from_bytes(body[7:10], "little")
            size = DecodedSize(width, height)
        elif fourcc == b"VP8 " and size is None and len(body) >= 10:
            width, height = struct.unpack("<HH", body[6:10])
            size = DecodedSize(width & 0x3FFF, height & 0x3FFF)
        elif fourcc == b"VP8L" and size is None and len(body) >= 5:
            bits = struct.unpack("<I", body[1:5])[0]
            size = DecodedSize(1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
        elif fourcc == b"ANMF":
            frames += 1
        f.seek(length + (length & 1) - len(body), os.SEEK_CUR)
    else:
        return DecodedSize(_WEBP_LARGEST, _WEBP_LARGEST, max(frames, 1),
                           assumed=f"more than {MAX_BLOCKS:,} chunks")
    if size is None:
        return None
    return dataclasses.replace(size, frames=max(frames, 1))
