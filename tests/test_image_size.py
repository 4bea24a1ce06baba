"""Image sizes read from file headers, checked against what the encoders were given, and the
guard that refuses images too large to decode before any decoder sees them."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import tensorflow as tf

from reid.data import image_size
from reid.data.decode import decode_rgb_bytes
from reid.data.image_size import read_image_size
from reid.data.pipeline import BadImageError, check_images, load_image


@pytest.mark.parametrize("suffix, params", [
    (".jpg", []),
    (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    (".png", []),
    (".bmp", []),
    (".webp", []),
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


# --- what the decoders allocate, however the file is laid out (issue 29, item 1) -------------

def _sub_blocks(data: bytes) -> bytes:
    return b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                    for i in range(0, len(data), 255)) + b"\x00"


def _lzw_literals(pixels: int, colour: int = 1) -> bytes:
    """Valid GIF LZW data (code size 2) of ``pixels`` pixels of one colour: literals only, a
    clear code before every two, so the code width stays 3 bits."""
    codes = []
    for start in range(0, pixels, 2):
        codes += [4] + [colour] * min(2, pixels - start)
    bits = sum(code << (3 * i) for i, code in enumerate(codes + [5]))
    return bits.to_bytes((3 * (len(codes) + 1) + 7) // 8, "little")


def _gif(screen: tuple[int, int], frames: list[tuple[int, int]], data: bytes | None = None,
         extensions: bool = False, trailer: bytes = b";") -> bytes:
    """A GIF of ``frames`` (width, height) on a ``screen``, each filled with one colour (or
    holding ``data`` as its LZW bytes); with ``extensions``, a graphic control, a comment and
    the looping extension before each frame, and a local colour table on each."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x81, 0, 0) + bytes(range(12))
    for width, height in frames:
        if extensions:
            out += b"!\xf9\x04\x04\x0a\x00\x00\x00" + b"!\xfe" + _sub_blocks(b"made by hand")
            out += b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
        out += b"," + struct.pack("<HHHHB", 0, 0, width, height, 0x81 if extensions else 0)
        out += bytes(range(12)) if extensions else b""
        out += b"\x02" + _sub_blocks(_lzw_literals(width * height) if data is None else data)
    return out + trailer


def test_a_gif_is_sized_by_its_frames_not_its_screen(tmp_path):
    # The probe's file: the screen says 16x16, the one frame 8000x8000, its data a few bytes.
    bomb = tmp_path / "bomb.gif"
    bomb.write_bytes(_gif((16, 16), [(8000, 8000)], data=b"\x04\x01\x05"))
    assert bomb.stat().st_size < 100
    assert read_image_size(bomb) == (8000, 8000)
    with pytest.raises(BadImageError, match=f"{bomb}: not decoded: 8000x8000 pixels, over the "
                                            f"limit of 50,000,000"):
        check_images([str(bomb)])
    # Every frame counts, each as the larger of the screen and the largest frame (hand-worked:
    # 3 frames of max(100, 30, 10) x max(50, 200, 10)), past extensions and colour tables.
    several = tmp_path / "several.gif"
    several.write_bytes(_gif((100, 50), [(100, 50), (30, 200), (10, 10)], data=b"\x04\x01\x05",
                             extensions=True))
    assert image_size.decoded_size(several) == image_size.DecodedSize(100, 200, 3)
    assert read_image_size(several) == (100, 600)  # frames one under another: the pixels
    assert image_size.oversize_reason(several, limit=59_999) == (
        "3 frames of 100x200 pixels (60,000 in all), over the limit of 59,999 (0.059999 "
        "megapixels); reduce the image first")
    assert image_size.oversize_reason(several, limit=60_000) is None


@pytest.mark.parametrize("screen, frames", [((16, 16), [(60, 40)]),
                                            ((16, 16), [(16, 16), (60, 40), (20, 30)])])
def test_the_gif_size_is_what_tensorflow_decodes(tmp_path, screen, frames):
    """TensorFlow sizes a GIF's output by its largest frame, not its screen, and holds every
    frame: what decoded_size counts (the reference for the bound above)."""
    data = _gif(screen, frames)
    decoded = tf.io.decode_gif(data).numpy()
    size = image_size.decoded_size(io.BytesIO(data))
    assert decoded.shape == (size.frames, size.height, size.width, 3) == (len(frames), 40, 60, 3)
    assert (decoded[0, :frames[0][1], :frames[0][0]] == [3, 4, 5]).all()  # colour 1 decoded


def test_a_gif_query_is_decoded_as_the_gallery_pipeline_decodes_it(tmp_path):
    # OpenCV 5 reads GIFs onto the screen's canvas (60x40 here), TensorFlow by the frame
    # (20x10): a GIF query goes to TensorFlow, as the gallery's pipeline and the service do.
    from reid.index.query import load_query_image

    path = tmp_path / "query.gif"
    path.write_bytes(_gif((60, 40), [(20, 10)]))
    np.testing.assert_allclose(load_query_image(str(path), 32, 16),
                               np.asarray(load_image(str(path), 32, 16)), atol=1e-5)


def test_a_truncated_or_odd_gif_counts_what_it_holds(tmp_path):
    whole = _gif((16, 16), [(16, 16), (300, 200)], data=b"\x04\x01\x05", trailer=b"")
    # Cut inside the second frame's data: giflib allocated that frame before reading it.
    cut = whole[:-3]
    assert image_size.decoded_size(io.BytesIO(cut)) == image_size.DecodedSize(300, 200, 2)
    # A block giflib refuses ends the walk; the frames before it count.
    odd = whole + b"\x99" + _gif((1, 1), [(9000, 9000)], data=b"\x04\x01\x05")[13:]
    assert image_size.decoded_size(io.BytesIO(odd)) == image_size.DecodedSize(300, 200, 2)
    # No frame at all: the screen, which OpenCV's decoder allocates.
    assert image_size.decoded_size(io.BytesIO(_gif((7000, 9000), []))) == (
        image_size.DecodedSize(7000, 9000, 1))


def _jpeg(height: int = 16, width: int = 16) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _with_frame(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header stating ``width`` x ``height``."""
    at = jpeg.index(b"\xff\xc0") + 5
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4:]


def test_a_jpeg_frame_header_counts_wherever_it_sits(tmp_path):
    padding = b"".join(b"\xff\xe1\xff\xff" + bytes(65533) for _ in range(17))  # 1.1 MiB of APP1
    padded = _jpeg()[:2] + padding + _jpeg()[2:]
    assert len(padded) > (1 << 20) + 1000
    # Decoders read past the padding (the reference: OpenCV decodes it as it was).
    assert cv2.imdecode(np.frombuffer(padded, np.uint8), cv2.IMREAD_COLOR).shape == (16, 16, 3)
    assert read_image_size(io.BytesIO(padded)) == (16, 16)
    big = tmp_path / "padded.jpg"
    big.write_bytes(_with_frame(padded, 9000, 7000))
    assert read_image_size(big) == (9000, 7000)
    with pytest.raises(BadImageError, match=f"{big}: not decoded: 9000x7000 pixels, over the "):
        load_image(str(big), 8, 4)
    # Stray bytes and 0xFF00 pairs before the frame header are passed over, as libjpeg does.
    stray = _with_frame(_jpeg(), 8000, 6000)
    sof = stray.index(b"\xff\xc0")
    for junk in (b"abc", b"\xff\x00", b"\xff\xff\xff", b"\x00" * 70000 + b"\xff\x00"):
        assert read_image_size(io.BytesIO(stray[:sof] + junk + stray[sof:])) == (8000, 6000)
    # Two frame headers before the scan: libjpeg refuses the file; the larger one counts.
    jpeg = _jpeg()
    sof = jpeg.index(b"\xff\xc0")
    header = _with_frame(jpeg, 9000, 9000)[sof:sof + 19]
    assert read_image_size(io.BytesIO(jpeg[:sof] + header + jpeg[sof:])) == (9000, 9000)
    # A frame header after the first scan is never read by a decoder (OpenCV decodes the file
    # as 16x16, libjpeg in TensorFlow refuses it: "two SOF markers"), so it does not count.
    after = jpeg[:-2] + header + jpeg[-2:]
    assert cv2.imdecode(np.frombuffer(after, np.uint8), cv2.IMREAD_COLOR).shape == (16, 16, 3)
    assert read_image_size(io.BytesIO(after)) == (16, 16)


def test_a_jpeg_without_a_scan_in_its_first_markers_is_refused(tmp_path):
    """Walking segments costs a microsecond each in Python: a file of tiny ones (10 MB of
    4-byte segments would take seconds) counts as the largest frame a JPEG can state."""
    crowded = tmp_path / "crowded.jpg"
    crowded.write_bytes(b"\xff\xd8" + b"\xff\xfe\x00\x02" * image_size.JPEG_MAX_MARKERS
                        + _jpeg()[2:])
    assert read_image_size(crowded) == (65535, 65535)
    assert image_size.oversize_reason(crowded).startswith(
        "65535x65535 pixels (assumed: no scan within its first 4,096 markers), over the limit")
    fewer = b"\xff\xd8" + b"\xff\xfe\x00\x02" * (image_size.JPEG_MAX_MARKERS - 20) + _jpeg()[2:]
    assert read_image_size(io.BytesIO(fewer)) == (16, 16)


def test_a_gif_or_webp_of_countless_tiny_blocks_is_refused_without_walking_them(monkeypatch):
    # 10 MB of empty GIF extensions took 1.7 s to walk, several times a request: past
    # MAX_BLOCKS blocks, sub-blocks or chunks a file counts as the largest its format states.
    monkeypatch.setattr(image_size, "MAX_BLOCKS", 50)
    frame = _gif((16, 16), [(20, 10)], data=b"\x04\x01\x05")
    head, rest = frame[:13 + 12], frame[13 + 12:]  # header and colour table; the frame
    within = head + b"!\xf9\x00" * 48 + rest  # 48 extensions, the frame and its 2 sub-blocks
    assert image_size.decoded_size(io.BytesIO(within)) == image_size.DecodedSize(20, 16, 1)
    beyond = head + b"!\xf9\x00" * 51 + rest
    assert image_size.decoded_size(io.BytesIO(beyond)) == image_size.DecodedSize(
        0xFFFF, 0xFFFF, 1, assumed="more than 50 blocks")
    sub_blocks = head + b"," + struct.pack("<HHHHB", 0, 0, 20, 10, 0) + b"\x02" \
        + b"\x01\x00" * 60 + b"\x00;"  # one frame whose data is 60 one-byte sub-blocks
    assert image_size.decoded_size(io.BytesIO(sub_blocks)).assumed == "more than 50 blocks"
    chunks = b"WEBP" + b"JUNK" + struct.pack("<I", 0) * 1 + (b"JUNK" + bytes(4)) * 50
    webp = b"RIFF" + struct.pack("<I", len(chunks)) + chunks
    assert image_size.decoded_size(io.BytesIO(webp)) == image_size.DecodedSize(
        0x3FFF, 0x3FFF, 1, assumed="more than 50 chunks")


def test_webp_which_tensorflow_decodes_too(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (81, 37, 3), dtype=np.uint8)
    for params in ([], [cv2.IMWRITE_WEBP_QUALITY, 101]):  # lossy (VP8) and lossless (VP8L)
        data = cv2.imencode(".webp", image, params)[1].tobytes()
        assert read_image_size(io.BytesIO(data)) == (37, 81)
        assert tf.io.decode_image(data, channels=3, expand_animations=False).shape == (81, 37, 3)
    # An animation: its canvas (VP8X, 24-bit sides) times its frames.
    canvas = b"VP8X" + struct.pack("<I", 10) + b"\x02\x00\x00\x00" + (8999).to_bytes(3, "little") \
        + (8999).to_bytes(3, "little")
    frame = b"ANMF" + struct.pack("<I", 17) + bytes(17) + b"\x00"  # odd sizes are padded
    body = b"WEBP" + canvas + frame * 2
    animated = b"RIFF" + struct.pack("<I", len(body)) + body
    assert image_size.decoded_size(io.BytesIO(animated)) == image_size.DecodedSize(9000, 9000, 2)


def test_formats_of_unknown_size_never_reach_opencv(tmp_path):
    image = np.zeros((20, 10, 3), np.uint8)
    for suffix in (".tiff", ".ppm"):
        data = cv2.imencode(suffix, image)[1].tobytes()
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
        assert read_image_size(io.BytesIO(data)) is None
        with pytest.raises(BadImageError, match="x.tiff: cannot read or decode image"):
            decode_rgb_bytes(data, "x.tiff")
    assert decode_rgb_bytes(cv2.imencode(".png", image)[1].tobytes(), "x.png").shape == (20, 10, 3)
