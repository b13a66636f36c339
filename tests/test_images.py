"""Safe image loading: real files written by the test, every mode, every bad-file case."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from xtask_core.errors import XTaskError
from xtask_core.images import load_image, image_size, to_jpeg_bytes, to_png_bytes


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def _png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose IHDR claims width×height but carries one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


def test_rgb_png_roundtrip_path_bytes_filelike(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    path.write_bytes(_save(Image.fromarray(arr), "PNG"))
    for src in (path, str(path), path.read_bytes(), io.BytesIO(path.read_bytes())):
        out = load_image(src)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, arr)
    assert image_size(path) == (30, 20)


def test_exif_orientation_6_rotates_clockwise():
    # 32 wide × 16 high: left half red, right half blue. Orientation 6 = "rotate 90° CW to view".
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :16] = (255, 0, 0)
    arr[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(data)
    assert out.shape == (32, 16, 3)          # width and height swapped
    # After a clockwise turn the former left (red) half is on top, blue at the bottom.
    assert out[4, 8, 0] > 200 and out[4, 8, 2] < 60
    assert out[28, 8, 2] > 200 and out[28, 8, 0] < 60


def test_grayscale_and_1bit():
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    out = load_image(_save(Image.fromarray(grey, "L"), "PNG"))
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out[..., 0], grey)
    np.testing.assert_array_equal(out[..., 1], out[..., 2])
    bw = Image.new("1", (10, 10), 1)
    assert load_image(_save(bw, "PNG")).min() == 255


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (10, 10), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    np.testing.assert_array_equal(load_image(_save(pal, "PNG"))[0, 0], [10, 200, 30])
    pal.info["transparency"] = 1                     # index 1 fully transparent → white
    np.testing.assert_array_equal(load_image(_save(pal, "PNG", transparency=1))[0, 0],
                                  [255, 255, 255])


def test_rgba_composited_on_white():
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., :3] = (200, 0, 0)
    arr[:4, :, 3] = 255     # opaque red
    arr[4:, :, 3] = 0       # fully transparent: hidden red must not show
    arr[4:, :4, 3] = 128    # half transparent: halfway to white
    out = load_image(_save(Image.fromarray(arr, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[7, 7], [255, 255, 255])
    # 200·128/255 + 255·127/255 = 100.4 + 127.0 = 227.4 → 227 ; 0 + 127 = 127
    np.testing.assert_array_equal(out[7, 0], [227, 127, 127])
    la = Image.fromarray(np.dstack([np.full((8, 8), 50, np.uint8), np.zeros((8, 8), np.uint8)]), "LA")
    assert (load_image(_save(la, "PNG")) == 255).all()


def test_cmyk_jpeg():
    data = _save(Image.new("CMYK", (16, 16), (0, 255, 0, 0)), "JPEG", quality=95)  # magenta
    px = load_image(data)[8, 8].astype(int)
    assert px[0] > 230 and px[1] < 25 and px[2] > 230


def test_16bit_png_scaled_by_257():
    arr = np.array([[0, 257, 65535, 257 * 100]] * 8, np.uint16)
    arr = np.tile(arr, (1, 2))
    im = Image.fromarray(arr)
    assert im.mode.startswith("I;16")
    out = load_image(_save(im, "PNG"))
    np.testing.assert_array_equal(out[0, :4, 0], [0, 1, 255, 100])


def test_float_and_int32_modes():
    f = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    out = load_image(_save(Image.fromarray(f, "F"), "TIFF"))
    assert out[0, 0, 0] == 0 and out[7, 7, 0] == 255
    i = (np.arange(64, dtype=np.int32).reshape(8, 8) - 100) * 1000   # negative → stretched
    out = load_image(_save(Image.fromarray(i, "I"), "TIFF"))
    assert out[0, 0, 0] == 0 and out[7, 7, 0] == 255


def test_tiny_image_refused_unless_allowed():
    one = _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")
    with pytest.raises(XTaskError, match="too small: 1×1"):
        load_image(one)
    np.testing.assert_array_equal(load_image(one, min_side=1), [[[9, 9, 9]]])


def test_huge_header_refused_before_decoding():
    # 100000×100000 = 1e10 px: Pillow's own header guard trips inside Image.open.
    with pytest.raises(XTaskError, match="image too large"):
        load_image(_png_header_only(100_000, 100_000))
    # 7000×7000 = 49 MP: under Pillow's guard, over our 40 MP cap. If the pixels were decoded
    # the tiny IDAT would give "truncated", so this message proves the header check came first.
    with pytest.raises(XTaskError, match=r"image too large: 7000×7000 = 49000000 pixels > cap"):
        load_image(_png_header_only(7000, 7000))
    with pytest.raises(XTaskError, match="image too large: 64×64"):
        load_image(_save(Image.new("RGB", (64, 64)), "PNG"), max_pixels=1000)


@pytest.mark.parametrize("data,match", [
    (b"", "empty file"),
    (np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
    (b"hello, I am a text file\n" * 20, "not an image"),
])
def test_bad_bytes(data, match):
    with pytest.raises(XTaskError, match=match):
        load_image(data)


def test_text_file_renamed_png_and_missing(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("just some text")
    with pytest.raises(XTaskError, match="not an image"):
        load_image(p)
    with pytest.raises(XTaskError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(XTaskError, match="not a regular file"):
        load_image(tmp_path)
    with pytest.raises(XTaskError, match="unsupported image source"):
        load_image(12345)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(fmt):
    arr = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _save(Image.fromarray(arr), fmt)
    with pytest.raises(XTaskError, match="truncated or corrupt") as info:
        load_image(data[: len(data) // 2])
    assert "\n" not in str(info.value)


def test_disallowed_format_refused():
    # EPS would need Ghostscript: it must not even be identified.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(XTaskError, match="not an image"):
        load_image(eps)


def test_encoders_roundtrip():
    rgb = np.random.default_rng(3).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_image(to_png_bytes(rgb)), rgb)
    u16 = np.arange(80, dtype=np.uint16).reshape(8, 10) * 800
    back = np.asarray(Image.open(io.BytesIO(to_png_bytes(u16))))
    np.testing.assert_array_equal(back, u16)
    assert load_image(to_jpeg_bytes(rgb)).shape == (9, 11, 3)
    with pytest.raises(XTaskError, match="cannot encode"):
        to_png_bytes(np.zeros((4, 4), np.float32))
