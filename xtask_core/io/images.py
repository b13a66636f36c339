"""Safe image decoding: the single entry point for every image file xtask reads.

Uploads (the app), ``xtask predict`` and dataset files (Cityscapes layout) all decode here, with
one library (Pillow) and the same header checks:

- :func:`load_image`: photos → ``H×W×3`` ``uint8`` RGB (any supported format and mode);
- :func:`load_label_png`: label-id PNGs → ``H×W`` ``uint8``, values exactly as stored
  (mode ``L`` grey values or mode ``P`` palette *indices*, never expanded to colours);
- :func:`load_uint16_png`: 16-bit single-channel PNGs (Cityscapes disparity) → ``H×W``
  ``uint16``, values exactly as stored.

Every problem is a one-line :class:`XTaskError` that starts with the file's path (or "image"
for bytes / an upload's name for streams).

Why each step is here
- **Allowed formats only.** ``Image.open`` is told which plugins it may try
  (:data:`ALLOWED_FORMATS`). Pillow can otherwise open formats such as EPS, whose loader
  runs an external Ghostscript process; a photo uploader has no business doing that.
- **Pixel cap before decoding.** ``Image.open`` is lazy: it reads the header only. We check
  ``width × height`` against ``max_pixels`` *before* ``load()`` so a tiny file that claims a
  gigapixel canvas (a decompression bomb) is refused without allocating anything. Pillow's own
  global guard (``Image.MAX_IMAGE_PIXELS``; ``DecompressionBombError`` above twice that) is left
  untouched - mutating a process-wide setting from a library would affect every other caller
  (the Streamlit server is multi-threaded) - and its error is translated to the same message.
  Whichever of the two limits is stricter wins.
- **Forced decode.** ``load()`` is called inside the ``try`` so truncated or corrupt pixel data
  fails here with a one-line :class:`XTaskError`, not later inside numpy or a model.
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is not changed (a truncated file is an error).
- **EXIF orientation** is applied (``ImageOps.exif_transpose``): phone photos are stored
  sideways with an orientation tag, and the model must see them upright. A malformed EXIF
  block is ignored (the image is shown as stored, as browsers do): the pixels are fine.
- **Explicit mode conversion** (see :func:`_to_rgb`):

  ===========================  ===================================================
  mode                         conversion
  ===========================  ===================================================
  RGB                          as is
  1, L                         grey replicated to three channels
  P (palette)                  palette lookup; with a transparency entry → as RGBA
  RGBA, LA, PA, RGBa, La       **composited over white** (not dropped): the RGB under
                               fully transparent pixels is arbitrary (often black or
                               junk) and would otherwise show up; white is what a
                               browser shows behind a transparent PNG
  CMYK                         Pillow's CMYK→RGB (Adobe-inverted JPEGs are handled by
                               the JPEG reader); no ICC colour management
  YCbCr, LAB, HSV, RGBX        Pillow's conversion to RGB
  RGB / RGBA, 16 bit per       each channel round(v / 257), like I;16 below (Pillow alone
  channel (PNG)                keeps only the high byte, v >> 8, which is off by one for
                               about half of the values); RGBA then composited over white
  I;16*, I (integer ≥ 8 bit)   if all values lie in [0, 65535]: divided by 257 (the
                               exact map of the full 16-bit range onto 0..255, so an
                               image keeps its absolute brightness); otherwise
                               (negative or > 16-bit values) stretched min→0, max→255
  F (float)                    values in [0, 1] → ×255; otherwise stretched min→max;
                               NaN/Inf → 0
  ===========================  ===================================================

Multi-frame files (GIF, APNG, TIFF) give their first frame.
"""
from __future__ import annotations

import io
import os
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from xtask_core.errors import XTaskError

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

# Plugins Image.open may try. Raster formats with plain decoders only (no EPS/PS, which
# shells out to Ghostscript; no exotic rarely-audited plugins).
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

DEFAULT_MAX_PIXELS = 40_000_000   # 40 MP: larger than any camera photo a user would upload
DEFAULT_MIN_SIDE = 8              # anything smaller carries no content a model can use

# Errors Pillow (and zlib / libjpeg underneath) raise for corrupt or truncated data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
                  struct.error, MemoryError)


def _read_source(source: ImageSource) -> tuple[bytes, str]:
    """Return (file bytes, the name for messages: the path as given, "image" for bytes, a
    stream's ``name``). Paths must be regular files."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "image"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise XTaskError(f"image file not found: {path}")
        if not path.is_file():
            raise XTaskError(f"not a regular file: {path}")
        try:
            return path.read_bytes(), str(path)
        except OSError as err:
            raise XTaskError(f"cannot read image {path}: {err.strerror or err}") from None
    if hasattr(source, "read"):
        # Streamlit's UploadedFile, BytesIO, an open file: read it all (a 40 MP image is at
        # most ~120 MB uncompressed; compressed files are much smaller).
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            data = source.read()
        except (OSError, ValueError) as err:
            raise XTaskError(f"cannot read image stream: {err}") from None
        if not isinstance(data, (bytes, bytearray)):
            raise XTaskError("image stream must be opened in binary mode")
        return bytes(data), getattr(source, "name", "image")
    raise XTaskError(f"unsupported image source type {type(source).__name__} "
                     "(give a path, bytes or a binary file object)")


def _too_large(name: str, width: int, height: int, max_pixels: int) -> XTaskError:
    return XTaskError(f"{name}: image too large: {width}×{height} = {width * height} pixels > cap "
                      f"{max_pixels} pixels")


def _scale_integer(arr: np.ndarray) -> np.ndarray:
    """Integer grey image (16- or 32-bit) → uint8, per the module table."""
    arr = arr.astype(np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi <= 65535:
        # Round-to-nearest of v/257: 65535 → 255 exactly, 257·k → k.
        return ((arr * 255 + 32767) // 65535).astype(np.uint8)
    if hi == lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _scale_float(arr: np.ndarray) -> np.ndarray:
    """Float grey image → uint8, per the module table (non-finite → 0)."""
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    if lo >= 0.0 and hi <= 1.0:
        out = arr * 255.0
    elif hi == lo:
        out = np.zeros_like(arr)
    else:
        out = (arr - lo) * (255.0 / (hi - lo))
    out = np.where(finite, out, 0.0)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: Image.Image) -> np.ndarray:
    """RGBA image → RGB array composited over a white background (alpha blending in uint8)."""
    arr = np.asarray(rgba.convert("RGBA"), dtype=np.uint16)
    rgb, alpha = arr[..., :3], arr[..., 3:4]
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Decoded Pillow image of any supported mode → H×W×3 uint8 RGB (see module table)."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("1", "L"):
        grey = np.asarray(im.convert("L"), dtype=np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "P":
        if "transparency" in im.info:
            return _composite_on_white(im.convert("RGBA"))
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # convert("RGBA") expands grey and un-premultiplies RGBa/La before compositing.
        return _composite_on_white(im)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        try:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except ValueError:
            raise XTaskError(f"unsupported image mode {mode} (cannot convert to RGB)") from None
    if mode.startswith("I"):   # I, I;16, I;16B, I;16L, I;16N
        grey = _scale_integer(np.asarray(im))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        grey = _scale_float(np.asarray(im))
        return np.repeat(grey[..., None], 3, axis=2)
    raise XTaskError(f"unsupported image mode {mode}")


def _open_checked(source: ImageSource, max_pixels: int, min_side: int,
                  formats: tuple[str, ...] = ALLOWED_FORMATS) -> tuple[Image.Image, str, bytes]:
    """Read ``source`` and open it lazily (header only) with the size checks done.

    Returns ``(image, name for messages, file bytes)``; no pixel has been decoded yet. The caller
    owns the image (use it as a context manager).
    """
    data, name = _read_source(source)
    if not data:
        raise XTaskError(f"{name}: empty file")
    try:
        # (No warnings.catch_warnings() here: it mutates process-wide state and is not
        # thread-safe under Streamlit. Pillow may warn for > MAX_IMAGE_PIXELS; our cap refuses.)
        im = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as err:
        # Raised by Image.open itself for > 2 × MAX_IMAGE_PIXELS: still a header-only refusal.
        m = re.search(r"\((\d+) pixels\)", str(err))
        n = m.group(1) if m else "?"
        raise XTaskError(f"{name}: image too large: {n} pixels > cap {max_pixels} pixels "
                         "(refused from the header, before decoding)") from None
    except UnidentifiedImageError:
        raise XTaskError(f"{name}: not an image (or not one of the supported formats "
                         f"{', '.join(formats)})") from None
    except _DECODE_ERRORS as err:
        raise XTaskError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None
    width, height = im.size
    problem = None
    if width <= 0 or height <= 0:
        problem = XTaskError(f"{name}: image has no pixels ({width}×{height})")
    elif width * height > max_pixels:
        problem = _too_large(name, width, height, max_pixels)
    elif min(width, height) < min_side:
        problem = XTaskError(f"{name}: image too small: {width}×{height} (each side must be at least "
                             f"{min_side} pixels)")
    if problem is not None:
        im.close()
        raise problem
    return im, name, data


def _png_rawmode(im: Image.Image) -> str | None:
    """How a (not yet loaded) PNG stores its pixels, e.g. "L", "P;4", "I;16B", "RGB;16B".

    Pillow maps several PNG bit depths onto one mode (1-, 2-, 4- and 8-bit grey all become "L";
    16-bit colour becomes 8-bit "RGB"), so the mode alone cannot tell whether values were
    rescaled; the single tile's raw mode can. None for other formats or unusual tilings.
    """
    tile = getattr(im, "tile", None)
    if im.format != "PNG" or not tile or len(tile) != 1:
        return None
    args = tile[0][3]
    return args if isinstance(args, str) else (args[0] if args else None)


def _decode(im: Image.Image, name: str) -> None:
    """Force the lazy decoder now, inside the try, so a truncated file fails here in one line."""
    try:
        im.load()
    except _DECODE_ERRORS as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise XTaskError(f"{name}: truncated or corrupt image ({msg})") from None


def _upright(im: Image.Image) -> Image.Image:
    """EXIF orientation applied; a malformed EXIF block leaves the image as stored (as browsers
    do) rather than refusing a readable photo."""
    try:
        return ImageOps.exif_transpose(im)
    except _DECODE_ERRORS:
        return im


# 16-bit-per-channel colour PNG raw modes → the raw mode that unpacks their *low* bytes
# (Pillow's ";16L" unpackers take the second byte of each big-endian sample).
_PNG16_LOW_BYTES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def _png16_colour_exact(im: Image.Image, data: bytes, low_rawmode: str, name: str) -> np.ndarray:
    """A 16-bit RGB(A) PNG whose high bytes ``im`` holds → H×W×3 uint8 with round(v/257).

    Pillow has no 48/64-bit colour mode and keeps only each sample's high byte. Decoding the
    same stream a second time with the matching low-byte raw mode recovers the full value
    ``v = 256·high + low`` (twice the decode time, paid only by these rare files).
    """
    with Image.open(io.BytesIO(data), formats=("PNG",)) as low:
        tile = low.tile[0]
        low.tile = [tile._replace(args=low_rawmode) if hasattr(tile, "_replace")
                    else (tile[0], tile[1], tile[2], low_rawmode)]
        _decode(low, name)
        hi = np.asarray(_upright(im), dtype=np.uint32)
        lo = np.asarray(_upright(low), dtype=np.uint32)
    v = hi * 256 + lo
    exact = ((v * 255 + 32767) // 65535).astype(np.uint8)   # round(v/257), as for I;16
    return _composite_on_white(Image.fromarray(exact, "RGBA")) if exact.shape[2] == 4 else exact


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS,
               min_side: int = DEFAULT_MIN_SIDE) -> np.ndarray:
    """Decode an image safely into an RGB array.

    Args:
        source: a path, the file's bytes, or a binary file-like object (e.g. a Streamlit upload).
        max_pixels: refuse images whose header says ``width × height`` exceeds this, before
            any pixel is decoded. The default (40 MP) admits native Cityscapes (2048×1024).
        min_side: refuse images whose shorter side is below this many pixels (dataset readers
            pass 1: their files are whatever size the dataset has).

    Returns:
        ``np.ndarray`` of shape H×W×3, dtype uint8, RGB order, upright (EXIF orientation applied).
        H and W are the *displayed* size (after a 90° EXIF rotation they are swapped). The array
        may be read-only (it wraps Pillow's decoded buffer without another copy); ``np.array``
        it before writing into it.

    Raises:
        XTaskError: one line starting with the file's name, e.g. ``"… empty file"``,
            ``"… not an image …"``, ``"… truncated or corrupt image …"``,
            ``"… image too large: W×H = N pixels > cap M pixels"``, ``"… image too small …"``.
    """
    im, name, data = _open_checked(source, max_pixels, min_side)
    with im:
        low_rawmode = _PNG16_LOW_BYTES.get(_png_rawmode(im) or "")   # read before load()
        _decode(im, name)
        try:
            if low_rawmode is not None:
                rgb = _png16_colour_exact(im, data, low_rawmode, name)
            else:
                rgb = _to_rgb(_upright(im))
        except XTaskError:
            raise
        except _DECODE_ERRORS as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise XTaskError(f"{name}: truncated or corrupt image ({msg})") from None
    # Defensive: never hand out a non-contiguous array (no copy when it already is one).
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise XTaskError(f"{name}: decoded to unexpected shape {rgb.shape}")
    return rgb


# Low-bit-depth grey PNGs: Pillow stretches them to 0..255 (2-bit v → 85·v, 4-bit v → 17·v);
# a label file means the stored numbers, so divide back (exact: the stretch is a multiplication).
_GREY_STRETCH = {"L;2": 85, "L;4": 17}   # (1-bit "1" images already read as 0/1)


def load_label_png(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a label-id PNG (e.g. Cityscapes ``*_gtFine_labelIds.png``) exactly.

    Args:
        source: path, bytes or binary file object of a **PNG** (a lossy JPEG would corrupt ids).
        max_pixels: header pixel cap, checked before decoding (as :func:`load_image`).

    Returns:
        ``np.ndarray`` H×W, dtype uint8: the stored values unchanged. Grey (mode ``L``, 1/2/4/8
        bit) gives the grey values; palette (mode ``P``, as written by image editors and many
        label tools) gives the palette *indices* (the colours are ignored). Possibly read-only.

    Raises:
        XTaskError: one line naming the file: not a PNG, truncated, over the cap, or not a
            single-channel 8-bit (or lower) image, e.g. RGB or 16-bit.
    """
    im, name, _ = _open_checked(source, max_pixels, min_side=1, formats=("PNG",))
    with im:
        rawmode = _png_rawmode(im)
        if im.mode not in ("L", "P", "1"):
            raise XTaskError(f"{name}: expected a single-channel 8-bit label-id PNG (grey or palette), "
                             f"got mode {im.mode}")
        _decode(im, name)
        lab = np.asarray(im, dtype=np.uint8)   # P → indices: np.asarray never applies the palette
    stretch = _GREY_STRETCH.get(rawmode or "") if im.mode == "L" else None
    if stretch is not None:
        lab = lab // stretch
    return lab


def load_uint16_png(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a 16-bit single-channel PNG (e.g. Cityscapes ``*_disparity.png``) exactly.

    Args:
        source: path, bytes or binary file object of a 16-bit grey **PNG**.
        max_pixels: header pixel cap, checked before decoding (as :func:`load_image`).

    Returns:
        ``np.ndarray`` H×W, dtype uint16 (native byte order), the stored values unchanged
        (no scaling). Possibly read-only.

    Raises:
        XTaskError: one line naming the file: not a PNG, truncated, over the cap, or not
            single-channel 16-bit (an 8-bit or colour PNG is refused, not converted).
    """
    im, name, _ = _open_checked(source, max_pixels, min_side=1, formats=("PNG",))
    with im:
        rawmode = _png_rawmode(im)
        # Pillow ≥ 10.? opens 16-bit grey PNGs as "I;16", older ones as 32-bit "I"; the raw mode
        # "I;16B" (PNG samples are big-endian) identifies the file either way.
        if not (im.mode.startswith("I;16") or (im.mode == "I" and rawmode == "I;16B")):
            got = "8-bit grey (mode L)" if im.mode == "L" else f"mode {im.mode}"
            raise XTaskError(f"{name}: expected a single-channel 16-bit PNG, got {got}")
        _decode(im, name)
        arr = np.asarray(im)
    if arr.dtype != np.uint16:   # "I" (int32) or a non-native-endian "I;16B" view
        arr = arr.astype(np.uint16)
    return arr


def image_size(source: ImageSource) -> tuple[int, int]:
    """(width, height) from the header only, without decoding pixels (EXIF rotation ignored)."""
    data, name = _read_source(source)
    if not data:
        raise XTaskError(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
            return im.size
    except Image.DecompressionBombError:
        raise XTaskError(f"{name}: image too large (refused from the header)") from None
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        raise XTaskError(f"{name}: not an image") from None


def to_png_bytes(array: np.ndarray) -> bytes:
    """Encode an array as PNG bytes (for downloads).

    Accepts H×W uint8 (grey), H×W uint16 (16-bit grey, e.g. a disparity PNG),
    H×W×3 uint8 (RGB) or H×W×4 uint8 (RGBA). Bool arrays are written as 0/255 grey.
    """
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2 and arr.dtype == np.uint16:
        im = Image.fromarray(np.ascontiguousarray(arr))   # Pillow picks I;16
    elif arr.dtype == np.uint8 and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        im = Image.fromarray(np.ascontiguousarray(arr))
    else:
        raise XTaskError(f"cannot encode array of shape {arr.shape} and dtype {arr.dtype} as PNG "
                         "(need H×W uint8/uint16 or H×W×3/4 uint8)")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def to_jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an H×W×3 uint8 RGB array as JPEG bytes."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise XTaskError(f"JPEG needs H×W×3 uint8, got {arr.shape} {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def resize_nearest(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of H×W or H×W×C (any dtype). Use it for labels and masks:
    it never invents a class that is not in the input. Output pixel i takes input pixel
    floor(i · h / height), the pixels ``cv2.INTER_NEAREST`` takes (what the dataset loaders use), so
    the ground truth a page shows and scores is the one ``xtask eval`` and the records score."""
    arr = np.asarray(arr)
    h, w = arr.shape[:2]
    rows = np.minimum(np.floor(np.arange(height) * (h / height)).astype(np.intp), h - 1)
    cols = np.minimum(np.floor(np.arange(width) * (w / width)).astype(np.intp), w - 1)
    return arr[rows[:, None], cols[None, :]]
