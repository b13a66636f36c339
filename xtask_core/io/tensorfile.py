"""Reading tensor files safely: the lowest layer under checkpoints and pretrained encoders.

Nothing here knows about models. Formats told apart by their first bytes (not the file name):
``.safetensors`` (8-byte little-endian header length, then JSON), a ``torch.save`` zip archive,
or a legacy ``torch.save`` / raw pickle.

Security: pickles are only ever read through ``torch.load(weights_only=True)``; before that,
the pickle's opcodes are scanned (without executing anything) and a file that imports anything
outside ``torch.*`` / ``collections.OrderedDict`` is refused, naming what it tried to import.
There is no unsafe fallback. Every user-fixable problem raises a one-line :class:`XTaskError`.
"""
from __future__ import annotations

import io
import os
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from xtask_core.errors import XTaskError

DEFAULT_MAX_BYTES = 2 * 1024 ** 3  # 2 GB: ResNet152 in fp32 is ~0.3 GB; larger is not ours
_SHOW = 5  # how many names an error message lists before "and N more"

# Globals a plain tensor pickle may import; torch's weights_only unpickler is the real gate,
# this list only decides what we refuse before handing the file to it at all.
_BENIGN_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode", "__builtin__.set",
                           "builtins.set", "builtins.frozenset", "builtins.slice")


# --------------------------------------------------------------------------- small helpers
def short_list(items: Iterable[str], show: int = _SHOW) -> str:
    """'a, b, c and 7 more' — keeps error messages to one readable line."""
    items = list(items)
    head = ", ".join(items[:show])
    return head + (f" and {len(items) - show} more" if len(items) > show else "")


def describe_key_mismatch(expected: Mapping[str, torch.Tensor],
                          actual: Mapping[str, torch.Tensor]) -> str:
    """Compare two state dicts by key and shape; '' if they match, else a one-line summary
    naming missing, unexpected and mis-shaped keys (a few each, then 'and N more')."""
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    shaped = [f"{k} {tuple(actual[k].shape)} vs expected {tuple(expected[k].shape)}"
              for k in expected if k in actual and tuple(actual[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {short_list(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {short_list(unexpected)}")
    if shaped:
        parts.append(f"{len(shaped)} mis-shaped tensor(s): {short_list(shaped, 3)}")
    return "; ".join(parts)


def check_file_size(path: Path, max_bytes: int) -> int:
    """Size of ``path`` in bytes; one-line XTaskError if missing, not a file, empty or over ``max_bytes``."""
    if not path.exists():
        raise XTaskError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise XTaskError(f"not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise XTaskError(f"{path.name} is empty (0 bytes): the save was probably interrupted")
    if size > max_bytes:
        raise XTaskError(f"{path.name} is {size / 1e9:.2f} GB, over the {max_bytes / 1e9:.2f} GB limit "
                         "for a checkpoint; pass a larger max_bytes if you trust it")
    return size


def sniff(path: Path) -> str:
    """'safetensors' | 'zip' (torch.save) | 'pickle' (legacy torch.save or raw pickle) | 'unknown'."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        # header length + JSON start; a length beyond the file end is a truncated safetensors
        if 2 <= n <= 100 * 1024 * 1024 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":  # pickle PROTO opcode
        return "pickle"
    return "unknown"


# --------------------------------------------------------------------------- pickle scanning
def pickle_globals(data: bytes, max_pickles: int = 4) -> list[str]:
    """List ``module.name`` of every GLOBAL / STACK_GLOBAL / INST in up to ``max_pickles``
    consecutive pickles of ``data``, without unpickling anything (opcode walk only).

    STACK_GLOBAL takes its names from the stack, so recent string pushes and memo entries are
    tracked; that covers how pickle writes them. Stops quietly at the first malformed opcode.
    """
    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(max_pickles):
        if stream.tell() >= len(data):
            break
        strings: list[str] = []
        memo: dict[int, str] = {}
        memo_n = 0  # MEMOIZE numbers every memoised object, strings or not
        last: str | None = None
        try:
            for op, arg, _pos in pickletools.genops(stream):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL":
                    if len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    else:
                        found.append("<unknown>")
                elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                              "SHORT_BINSTRING", "BINSTRING", "STRING"):
                    last = str(arg)
                    strings.append(last)
                    continue
                elif name == "MEMOIZE":
                    if last is not None:
                        memo[memo_n] = last
                    memo_n += 1
                elif name in ("BINPUT", "LONG_BINPUT", "PUT") and last is not None:
                    memo[int(arg)] = last
                elif name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                    last = memo[int(arg)]
                    strings.append(last)
                    continue
                elif name == "STOP":
                    break
                if name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                    last = None
        except Exception:  # malformed or non-pickle bytes: report what was seen so far
            break
    return found


def _zip_pickle_bytes(path: Path) -> bytes:
    """The ``data.pkl`` member of a torch.save zip archive (the object pickle)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            if not names:
                raise XTaskError(f"{path.name}: zip archive without data.pkl, not a torch checkpoint")
            with zf.open(names[0]) as fh:
                return fh.read(64 * 1024 * 1024)
    except XTaskError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise XTaskError(f"{path.name} is truncated or corrupt (bad zip archive: {err})") from None


def refuse_unsafe_globals(path: Path, kind: str) -> None:
    """Raise before unpickling if the pickle imports anything but plain-tensor machinery."""
    if kind == "zip":
        data = _zip_pickle_bytes(path)
    else:
        with open(path, "rb") as fh:
            data = fh.read(64 * 1024 * 1024)
    globs = list(dict.fromkeys(pickle_globals(data)))  # unique, in order of appearance
    unsafe = [g for g in globs if not g.startswith(_BENIGN_GLOBAL_PREFIXES)]
    if any(g.startswith(("torch.nn.modules.", "xtask_core.")) for g in globs):
        # torch.save(model): module classes (and the user's own model class) in the pickle
        shown = [g for g in unsafe if not g.startswith("torch.")] + \
                [g for g in globs if g.startswith("torch.nn.modules.")]
        raise XTaskError(f"{path.name} is a pickled whole model (imports {short_list(shown, 3)}), which cannot "
                         "be loaded safely and was not; re-save it with torch.save(model.state_dict(), path)")
    if unsafe:
        raise XTaskError(f"refusing to load {path.name}: its pickle imports {short_list(unsafe)}, "
                         "not just tensors (possibly malicious); nothing was executed")


def torch_load_safe(path: Path, kind: str) -> Any:
    """torch.load with weights_only=True, never anything else; errors become one-line XTaskErrors."""
    refuse_unsafe_globals(path, kind)
    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols; errors speak for us
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except XTaskError:
        raise
    except Exception as err:  # noqa: BLE001 - every failure mode of a bad file maps to one message
        msg = str(err)
        glob = re.search(r"GLOBAL ([\w.]+)", msg)
        if glob:
            raise XTaskError(f"refusing to load {path.name}: its pickle imports {glob.group(1)}, "
                             "not just tensors; nothing was executed") from None
        reason = "truncated" if any(w in msg.lower() for w in ("eof", "truncat", "failed reading")) \
            else "corrupt or not a torch checkpoint"
        # torch's message is many lines of advice; keep the one line that says what broke
        boiler = ("weights only load failed", "check the documentation", "please file an issue",
                  "in pytorch 2.6", "re-running")
        lines = [ln.strip() for ln in msg.splitlines()
                 if ln.strip() and not ln.strip().lower().startswith(boiler)]
        detail = (lines[0] if lines else type(err).__name__)[:120]
        raise XTaskError(f"{path.name} is {reason} ({detail})") from None


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors by name, on CPU; header metadata strings) of a ``.safetensors`` file."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # SafetensorError, OSError, ...: truncated or corrupt
        raise XTaskError(f"{path.name} is a truncated or corrupt .safetensors file ({str(err)[:120]})") from None
    return tensors, metadata


def read_tensor_file(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Safely read a tensor file: ``.safetensors`` → dict of tensors; torch pickle → the object
    (through ``weights_only=True`` after a global scan). Raises XTaskError on anything bad."""
    path = Path(path)
    check_file_size(path, max_bytes)
    kind = sniff(path)
    if kind == "safetensors":
        return read_safetensors(path)[0]
    if kind in ("zip", "pickle"):
        return torch_load_safe(path, kind)
    raise XTaskError(f"{path.name} is not a checkpoint (neither .safetensors nor a torch.save file)")


def strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the ``module.`` prefix DataParallel adds, when every key has it; else a plain copy."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)
