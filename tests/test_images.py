"""Safe image loading: real files written by the test, every mode, every bad-file case."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from xtask_core.errors import XTaskError
from xtask_core.io.images import (
    image_size,
    load_image,
    load_label_png,
    load_uint16_png,
    to_jpeg_bytes,
    to_png_bytes,
)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def _png_header_only(width: int, height: int, bits: int = 8, colour: int = 2) -> bytes:
    """A syntactically valid PNG whose IHDR claims width×height but carries one tiny IDAT.
    ``colour``: PNG colour type (0 grey, 2 RGB, 3 palette); ``bits``: bits per sample."""
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
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


def test_16bit_rgb_png_scaled_by_257_not_high_byte():
    # Pillow alone keeps the high byte (v >> 8); v = 383 → 1 that way but round(383/257) = 1,
    # v = 386 → 1 that way but round(386/257) = round(1.502) = 2; 65535 → 255; 257·k → k.
    vals = np.array([0, 383, 386, 65535, 257 * 100, 32896], np.uint16)   # 32896/257 = 128.0
    rgb16 = np.zeros((8, 8, 3), np.uint16)
    rgb16[0, :6, 0] = vals
    rgb16[..., 1] = 386
    rgb16[..., 2] = 65535
    import cv2  # Pillow cannot write 48-bit PNGs; OpenCV writes them (BGR order)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb16[..., ::-1]))
    assert ok
    out = load_image(buf.tobytes())
    np.testing.assert_array_equal(out[0, :6, 0], [0, 1, 2, 255, 100, 128])
    assert (out[..., 1] == 2).all() and (out[..., 2] == 255).all()
    # random values: exactly round(v/257) everywhere (v/257 is never exactly x.5)
    rnd = np.random.default_rng(4).integers(0, 65536, (9, 10, 4), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", rnd)          # 64-bit BGRA: alpha 16-bit too
    rgba8 = np.round(rnd[..., [2, 1, 0, 3]] / 257).astype(np.uint16)
    expect = (rgba8[..., :3] * rgba8[..., 3:] + 255 * (255 - rgba8[..., 3:]) + 127) // 255
    np.testing.assert_array_equal(load_image(buf.tobytes()), expect.astype(np.uint8))


def test_label_png_keeps_ids_grey_and_palette():
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(load_label_png(_save(Image.fromarray(ids, "L"), "PNG")), ids)
    # Palette PNG as label tools write it: index k has some colour; we want k, not the colour.
    pal = Image.fromarray(ids, "P")
    pal.putpalette([(7 * i) % 256 for i in range(768)])
    out = load_label_png(_save(pal, "PNG"))
    assert out.dtype == np.uint8 and out.shape == (16, 16)
    np.testing.assert_array_equal(out, ids)
    # a 4-bit palette PNG (Pillow writes bits=4 for ≤ 16 colours) keeps indices too
    small = Image.fromarray((ids % 16).astype(np.uint8), "P")
    small.putpalette([255 - i % 256 for i in range(48)])
    data = _save(small, "PNG", bits=4)
    assert Image.open(io.BytesIO(data)).tile[0][3] == "P;4"
    np.testing.assert_array_equal(load_label_png(data), ids % 16)


def test_label_png_low_bit_grey_not_stretched():
    # 4-bit grey PNG holding 0..15: Pillow reads 17·v, the label reader must give v back.
    vals = np.arange(16, dtype=np.uint8).reshape(2, 8)
    raw = b"".join(b"\x00" + bytes((r[i] << 4) | r[i + 1] for i in range(0, 8, 2)) for r in vals)
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 2, 4, 0, 0, 0, 0))
           + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    np.testing.assert_array_equal(load_label_png(png), vals)


def test_uint16_png_exact():
    vals = np.array([0, 1, 255, 256, 257, 2561, 32768, 65534, 65535], np.uint16)
    arr = np.tile(vals, (4, 1))
    out = load_uint16_png(to_png_bytes(arr))
    assert out.dtype == np.uint16 and out.shape == (4, 9)
    np.testing.assert_array_equal(out, arr)
    rnd = np.random.default_rng(5).integers(0, 65536, (17, 23), dtype=np.uint16)
    np.testing.assert_array_equal(load_uint16_png(io.BytesIO(to_png_bytes(rnd))), rnd)


def test_dataset_png_readers_refuse_in_one_line(tmp_path):
    grey8 = _save(Image.new("L", (8, 8)), "PNG")
    rgb = _save(Image.new("RGB", (8, 8)), "PNG")
    cases = [
        (load_uint16_png, grey8, "expected a single-channel 16-bit PNG, got 8-bit grey"),
        (load_uint16_png, rgb, "expected a single-channel 16-bit PNG, got mode RGB"),
        (load_label_png, rgb, "expected a single-channel 8-bit label-id PNG"),
        (load_label_png, to_png_bytes(np.zeros((8, 8), np.uint16)), "got mode I;16"),
        (load_label_png, _save(Image.new("L", (8, 8)), "JPEG"), "not an image"),   # PNG only
        (load_label_png, b"hello" * 50, "not an image"),
        (load_uint16_png, b"", "empty file"),
        (load_uint16_png, to_png_bytes(np.arange(4096, dtype=np.uint16).reshape(64, 64))[:-40],
         "truncated or corrupt"),
    ]
    for i, (fn, data, match) in enumerate(cases):
        path = tmp_path / f"case{i}.png"
        path.write_bytes(data)
        with pytest.raises(XTaskError, match=match) as info:
            fn(path)
        msg = str(info.value)
        assert msg.startswith(str(path) + ": ") and "\n" not in msg, msg


def test_dataset_png_readers_cap_from_header():
    # 7000×7000 over the 40 MP cap, refused from the header: decoding the tiny IDAT would
    # say "truncated" instead.
    with pytest.raises(XTaskError, match=r"image too large: 7000×7000 = 49000000 pixels > cap"):
        load_uint16_png(_png_header_only(7000, 7000, bits=16, colour=0))
    with pytest.raises(XTaskError, match=r"image too large: 7000×7000"):
        load_label_png(_png_header_only(7000, 7000, bits=8, colour=0))
    with pytest.raises(XTaskError, match="image too large: 100000×100000|image too large: 10000000000"):
        load_label_png(_png_header_only(100_000, 100_000, bits=8, colour=0))
    with pytest.raises(XTaskError, match="image too large: 8×8 = 64 pixels > cap 63"):
        load_uint16_png(to_png_bytes(np.zeros((8, 8), np.uint16)), max_pixels=63)
    # the cap admits native Cityscapes 2048×1024 (RGB, label, disparity): the header of a real
    # size file passes the check and then fails only for its tiny pixel data
    for fn, bits, colour in ((load_image, 8, 2), (load_label_png, 8, 0), (load_uint16_png, 16, 0)):
        with pytest.raises(XTaskError, match="truncated or corrupt"):
            fn(_png_header_only(2048, 1024, bits=bits, colour=colour))
