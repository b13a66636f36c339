"""Factories of real bad (and awkward-but-valid) files for the reliability tests.

Every function returns the bytes of a file (or writes one) exactly as a user, a crashed
process or an attacker could leave it on disk. Nothing here is a mock: the tests hand these
files to the real CLI and the real readers.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


# --------------------------------------------------------------------------- images
def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    """Pillow image → file bytes in ``fmt`` ("PNG", "JPEG", ...)."""
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def random_bytes(n: int = 4096, seed: int = 0) -> bytes:
    """``n`` uniformly random bytes (what a corrupted download looks like)."""
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def noise_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """h×w×3 uint8 random colours (incompressible, so truncation really cuts pixel data)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    """The first ``fraction`` of ``data``: an interrupted copy or upload."""
    return data[: max(1, int(len(data) * fraction))]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_claiming(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims width×height 8-bit RGB pixels (a decompression
    bomb's header); its one IDAT holds 16 zero bytes, so decoding it would also fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


def cmyk_jpeg(h: int, w: int) -> bytes:
    """A CMYK JPEG of pure magenta (C=0, M=255, Y=0, K=0) → RGB ≈ (255, 0, 255)."""
    return encode(Image.new("CMYK", (w, h), (0, 255, 0, 0)), "JPEG", quality=95)


def png16(h: int, w: int, value: int) -> bytes:
    """A 16-bit greyscale PNG (mode I;16) filled with ``value`` (0..65535)."""
    im = Image.fromarray(np.full((h, w), value, np.uint16))
    assert im.mode.startswith("I;16"), im.mode
    return encode(im, "PNG")


def palette_png(h: int, w: int) -> bytes:
    """A palette (mode P) PNG: left half palette entry 0 = red, right half entry 1 = blue."""
    idx = np.zeros((h, w), np.uint8)
    idx[:, w // 2:] = 1
    im = Image.fromarray(idx, "P")
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    return encode(im, "PNG")


def exif_rotated_jpeg(h: int, w: int, orientation: int = 6) -> bytes:
    """A JPEG stored h×w (left half red, right half blue) with an EXIF orientation tag.

    Orientation 6 means "turn 90° clockwise to view": the upright image is w×h with the
    stored left (red) half on top, as a phone held upright writes it.
    """
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95)


TEXT = b"These are my holiday notes, not a photo.\n" * 40


# --------------------------------------------------------------------------- pickles
class CreatesMarker:
    """Unpickling this runs ``os.system("touch MARKER")``: a harmless stand-in for the code an
    attacker would run. The pickle stream only names ``posix.system`` (``nt.system`` on
    Windows); this class itself is not referenced, exactly like a real exploit file."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def malicious_pickle(marker: Path) -> bytes:
    """A legacy-format pickle (starts with the PROTO opcode, as old ``torch.save`` files do)
    of a dict whose value runs a command when unpickled."""
    return pickle.dumps({"decoder_segmt.conv6.0.weight": CreatesMarker(marker)}, protocol=2)


def malicious_torch_zip(path: Path, marker: Path) -> Path:
    """A zip-format ``torch.save`` file with real tensors and one booby-trapped entry."""
    import torch

    torch.save({"weight": torch.zeros(2, 2), "payload": CreatesMarker(marker)}, path)
    return path


def whole_model_pickle(path: Path, model) -> Path:
    """``torch.save(model)``: the module object itself, whose unpickling imports our classes."""
    import torch

    torch.save(model, path)
    return path


# --------------------------------------------------------------------------- safetensors
def rewrite_safetensors(src: Path, dst: Path, edit) -> Path:
    """Copy an xtask ``.safetensors`` with its header metadata, after ``edit(state)`` (in place)
    changed the tensors: for wrong-architecture and NaN-weight files that keep a valid header."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as fh:
        meta = fh.metadata()
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    edit(state)
    save_file(state, str(dst), metadata=meta)
    return dst
