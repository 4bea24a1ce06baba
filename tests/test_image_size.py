"""Image sizes read from file headers, checked against what the encoders were given, and the
guard that refuses images too large to decode before any decoder sees them."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from reid.data import image_size
from reid.data.image_size import read_image_size
from reid.data.pipeline import BadImageError, check_images, load_image


@pytest.mark.parametrize("suffix, params", [
    (".jpg", []),
    (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    (".png", []),
    (".bmp", []),
])
@pytest.mark.parametrize("width, height", [(37, 81), (300, 7)])
def test_size_from_the_header_is_what_was_encoded(tmp_path, suffix, params, width, height):
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    path = tmp_path / f"x{suffix}"
    assert cv2.imwrite(str(path), image, params)
    assert read_image_size(path) == (width, height)


def test_hand_written_headers_and_unknown_bytes(tmp_path):
    gif = tmp_path / "a.gif"
    gif.write_bytes(b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00" * 10)
    assert read_image_size(gif) == (640, 480)
    jpeg = tmp_path / "exif.jpg"  # an APP1 segment and fill bytes before the frame header
    jpeg.write_bytes(b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", 6) + b"Exif" + b"\xff\xff"
                     + b"\xc0" + struct.pack(">HBHH", 11, 8, 1200, 1600) + b"\x03")
    assert read_image_size(jpeg) == (1600, 1200)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert read_image_size(other) is None
    assert read_image_size(tmp_path / "missing.png") is None


def _png_claiming(path, width, height):
    """A PNG whose header claims a size its (tiny) body does not hold."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(
        ">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 16)
    return str(path)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    huge = _png_claiming(tmp_path / "huge.png", 20000, 20000)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((8, 4, 3), np.uint8))
    message = f"{huge}: not decoded: 20000x20000 pixels, over the limit of 50,000,000"
    with pytest.raises(BadImageError, match=message):
        check_images([str(small), huge])
    with pytest.raises(BadImageError, match=message):
        load_image(huge, 8, 4)
    with pytest.warns(UserWarning, match="huge.png"):
        assert check_images([str(small), huge], skip_bad=True) == [str(small)]


def test_the_limit_is_what_decides(tmp_path, monkeypatch):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.zeros((20, 10, 3), np.uint8))
    monkeypatch.setattr(image_size, "MAX_IMAGE_PIXELS", 200)
    assert check_images([str(path)]) == [str(path)]  # 200 pixels: at the limit, allowed
    monkeypatch.setattr(image_size, "MAX_IMAGE_PIXELS", 199)
    with pytest.raises(BadImageError, match="10x20 pixels, over the limit of 199"):
        check_images([str(path)])
