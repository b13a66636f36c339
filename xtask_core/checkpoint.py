"""Save and load XTaskNet checkpoints (and the single-task STLNet baseline's: the same format with
``task`` in the config); import the original code's ``model.pth``, cross-task or single-task.

One module serves the trainer, the CLI and the app.

Formats read by :func:`load_checkpoint` (detected from the file's first bytes, not its name):

- ``xtask``: ours, one ``.safetensors`` file; its header metadata holds JSON strings
  ``format`` (``"xtask/1"``), ``config`` (:class:`ModelConfig` dict) and ``meta`` (dataset,
  class names, palette, depth kind, training summary). Tensors may be stored as float16
  (``half=True``) and come back as float32.
- ``xtask-mt``: the original code's plain ``state_dict`` pickle (``exps/NNN/model/model.pth``),
  with or without a ``module.`` prefix (DataParallel). The architecture is read off the tensor
  shapes (:func:`infer_config`).
- ``train-state``: our ``last.pt`` training state (dict with ``"model"`` and ``"config"``).
- a bare ``.safetensors`` state dict in the original key layout (no metadata) is read as ``xtask-mt``.

Reading bytes safely (size cap, format sniffing, pickle-global scan, ``weights_only`` loads)
lives in :mod:`xtask_core.io.tensorfile`; this module adds what is specific to XTaskNet:
the header metadata, config inference, strict key/shape checks and NaN/Inf refusal.
Every user-fixable problem raises a one-line :class:`XTaskError`.
"""
from __future__ import annotations

import colorsys
import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from safetensors.torch import save as st_save

from xtask_core.config import DATASET_DEFAULTS, ModelConfig
from xtask_core.data import labels
from xtask_core.device import default_device
from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_path
from xtask_core.io.tensorfile import (
    DEFAULT_MAX_BYTES,
    check_file_size,
    describe_key_mismatch,
    read_safetensors,
    read_tensor_file,
    short_list,
    sniff,
    strip_module_prefix,
    torch_load_safe,
)
from xtask_core.model.encoder import BLOCK_COUNTS
from xtask_core.model.stl import build_model

FORMAT = "xtask/1"
TRAIN_STATE_FORMAT = "xtask-train/1"
# Re-exported: callers and tests read these through the checkpoint module too.
__all__ = ["FORMAT", "TRAIN_STATE_FORMAT", "DEFAULT_MAX_BYTES", "Loaded", "CheckpointMeta", "default_meta",
           "save_checkpoint", "load_checkpoint", "infer_config", "save_train_state",
           "load_train_state", "describe", "read_tensor_file", "describe_key_mismatch"]


# --------------------------------------------------------------------------- small helpers
def _is_finite(v: torch.Tensor) -> bool:
    # A plain sum is ~15x cheaper than an elementwise isfinite mask: any NaN/Inf element makes
    # the sum NaN/Inf, so a finite sum proves the tensor finite. Only a non-finite sum (which
    # huge but finite values can also cause, by overflow) needs the exact elementwise check.
    if not torch.is_floating_point(v):
        return True
    return bool(torch.isfinite(v.sum())) or bool(torch.isfinite(v).all())


def _check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    bad = [k for k, v in state.items() if not _is_finite(v)]
    if bad:
        raise XTaskError(f"{where}: {len(bad)} tensor(s) contain NaN or Inf: {short_list(bad)}; "
                         "the weights are broken (diverged training?)")


def _json_default(obj: Any):
    """Make numpy / torch / Path values JSON-serialisable in ``meta``."""
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------- meta
def _guess_dataset(num_classes: int) -> str:
    return labels.dataset_for_classes(num_classes)


def _generic_palette(n: int) -> list[list[int]]:
    """Distinct colours by golden-ratio hue steps, for class counts without a known table."""
    return [[int(round(255 * c)) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.95)]
            for i in range(n)]


_DISPARITY_NOTE = ("inverse depth = disparity_px / 256 (PNG (p-1)/256²), clipped at 0.4922; "
                   "metres ≈ 0.209 m × 2262.52 px / (256 × value)")


def _readonly(value: Any) -> MappingProxyType:
    return MappingProxyType(copy.deepcopy(dict(value)))


@dataclass(frozen=True)
class CheckpointMeta:
    """The ``meta`` header of a checkpoint as a read-only value.

    Known keys are fields (sequences as tuples, mappings as read-only views); any other key, or a
    known key whose value has an unexpected type, is kept verbatim in ``extra`` so that
    ``CheckpointMeta.from_dict(d).to_dict() == d`` (same keys, same order) for every header that
    holds the known keys, which is every header :func:`save_checkpoint` writes from
    :func:`default_meta`. A header missing a known key gets that key's default back.
    """

    name: str = ""
    dataset: str = "unknown"
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, ...], ...] = ()
    ignore_index: int = labels.CITYSCAPES_IGNORE
    depth_kind: str = "disparity"
    depth_scale_note: str = _DISPARITY_NOTE
    training: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "palette", tuple(tuple(c) for c in self.palette))
        object.__setattr__(self, "training", _readonly(self.training))
        object.__setattr__(self, "extra", _readonly(self.extra))

    @classmethod
    def for_dataset(cls, num_classes: int, dataset: str | None = None) -> CheckpointMeta:
        """Meta of a model of ``num_classes`` trained on ``dataset``, from :mod:`xtask_core.data.labels`.

        ``dataset=None`` guesses from the class count (13 → nyuv2; 7 or 19 → cityscapes; else
        "unknown"). A (dataset, class count) without a table gets "class k" names and generated
        colours; an unknown dataset reads like Cityscapes (ignore 250, disparity).
        """
        dataset = dataset or _guess_dataset(num_classes)
        names: list[str] | None = None
        colours: list | None = None
        try:
            names = [str(n) for n in labels.class_names(dataset, num_classes)]
            colours = [[int(c) for c in rgb] for rgb in labels.palette(dataset, num_classes)]
        except XTaskError:
            pass  # no table for this (dataset, class count): generic names below
        if not names or len(names) != num_classes:
            names = [f"class {i}" for i in range(num_classes)]
        if not colours or len(colours) != num_classes:
            colours = _generic_palette(num_classes)
        try:
            ignore, kind = labels.ignore_index(dataset), labels.depth_kind(dataset)
        except XTaskError:  # a dataset labels.py does not know
            ignore, kind = labels.CITYSCAPES_IGNORE, "disparity"
        return cls(dataset=dataset, class_names=names, palette=colours, ignore_index=ignore,
                   depth_kind=kind, depth_scale_note="metres" if kind == "depth" else _DISPARITY_NOTE)

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any]) -> CheckpointMeta:
        """Read a ``meta`` header (e.g. :attr:`Loaded.meta`); nothing in it is dropped."""
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in meta.items():
            kind = _META_TYPES.get(key)
            ok = kind is not None and isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if ok and key == "palette":
                ok = all(isinstance(c, list) for c in value)
            (known if ok else extra)[key] = value
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict: the known keys in header order, then ``extra`` (which wins a clash)."""
        out: dict[str, Any] = {
            "name": self.name, "dataset": self.dataset, "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette], "ignore_index": self.ignore_index,
            "depth_kind": self.depth_kind, "depth_scale_note": self.depth_scale_note,
            "training": copy.deepcopy(dict(self.training)),
        }
        out.update(copy.deepcopy(dict(self.extra)))
        return out


_META_TYPES: dict[str, type] = {
    "name": str, "dataset": str, "class_names": list, "palette": list, "ignore_index": int,
    "depth_kind": str, "depth_scale_note": str, "training": dict,
}


def default_meta(num_classes: int, dataset: str | None = None) -> dict:
    """Meta dict for a model of ``num_classes`` trained on ``dataset``: a fresh, mutable
    :meth:`CheckpointMeta.for_dataset` ``.to_dict()``."""
    return CheckpointMeta.for_dataset(num_classes, dataset).to_dict()


# --------------------------------------------------------------------------- saving
@dataclass
class Loaded:
    """A loaded checkpoint: ``model`` (XTaskNet, or STLNet when ``config.task`` is one task; eval mode,
    float32 on the chosen device),
    ``config`` (ModelConfig), ``meta`` (dict, see :func:`default_meta`), ``source``
    ("xtask" | "xtask-mt" | "train-state") and ``path``."""

    model: torch.nn.Module
    config: ModelConfig
    meta: dict
    source: str
    path: Path

    @property
    def card(self) -> CheckpointMeta:
        """:attr:`meta` as a read-only :class:`CheckpointMeta`."""
        return CheckpointMeta.from_dict(self.meta)


def _plain_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # detach + contiguous + clone: safetensors refuses shared or strided storage
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, meta: Mapping | None = None, *,
                    half: bool = False, overwrite: bool = False) -> Path:
    """Write ``model`` (an XTaskNet with ``.config``) and ``meta`` to one ``.safetensors`` file.

    Args:
        path: destination; written atomically (temp file + rename), so a failed save leaves
            neither a partial file nor a damaged old one.
        meta: JSON-serialisable dict (see :func:`default_meta`); ``None`` → default meta.
        half: store floating tensors as float16 (half the size; loaded back as float32).
            Refused if a value does not fit float16.
        overwrite: replace an existing file (the trainer's ``last``); otherwise refuse.

    Returns the path written.
    """
    path = Path(path)
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise XTaskError("save_checkpoint needs an XTaskNet (a model with a ModelConfig .config)")
    if not overwrite and path.exists():
        raise XTaskError(f"refusing to overwrite existing file {path}")
    meta = dict(default_meta(config.num_classes) if meta is None else meta)
    state = _plain_state(model)
    _check_finite(state, "save_checkpoint")
    if half:
        state = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in state.items()}
        _check_finite(state, "save_checkpoint(half=True): values too large for float16")
    try:
        header = {"format": FORMAT,
                  "config": json.dumps(config.to_dict()),
                  "meta": json.dumps(meta, default=_json_default),
                  "dtype": "float16" if half else "float32"}
    except (TypeError, ValueError) as err:
        raise XTaskError(f"checkpoint meta is not JSON-serialisable: {err}") from None
    blob = st_save(state, metadata=header)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
    return path


# --------------------------------------------------------------------------- config inference
def infer_config(state: Mapping[str, torch.Tensor]) -> ModelConfig:
    """Read an original-layout state dict's architecture off its keys and shapes.

    - ``enc_layers``: residual blocks per stage (``layer1.1.<i>``, ``layer2..4.<i>``) plus the
      block type (bottleneck blocks have ``conv3``): (2,2,2,2)→18, (3,4,6,3)→34 or 50,
      (3,4,23,3)→101, (3,8,36,3)→152.
    - ``num_classes``: rows of ``decoder_segmt.conv6.0.weight``; ``mid_features``: rows of
      ``decoder_segmt.conv1.conv1.0.weight``.
    - ``batch_norm``: TTNet BN keys present; TTNet width f from ``trans_s2d.enc1...`` rows:
      f = 128 is the original ``wider_ttnet`` (64 × 2).
    - height/width: not stored in weights; the dataset defaults for that class count.

    The original's single-task baseline (``main_stl.py``: ``pretrained_encoder.*`` + ``decoder.*``)
    is recognised by its ``decoder.conv6.0.weight`` and gives ``task`` ``"segmt"`` (≥ 2 output
    channels = the class count) or ``"depth"`` (1 channel; its class count is not stored, the
    Cityscapes default 7 is used).
    """
    if "decoder.conv6.0.weight" in state and "decoder_segmt.conv6.0.weight" not in state:
        return _infer_stl_config(state)
    need = ["decoder_segmt.conv6.0.weight", "decoder_segmt.conv1.conv1.0.weight",
            "trans_s2d.enc1.double_conv.0.conv.0.weight", "pretrained_encoder.layer0.0.weight"]
    _require(state, need)
    enc_layers = _encoder_depth(state)
    num_classes = int(state["decoder_segmt.conv6.0.weight"].shape[0])
    mid = int(state["decoder_segmt.conv1.conv1.0.weight"].shape[0])
    f = int(state["trans_s2d.enc1.double_conv.0.conv.0.weight"].shape[0])
    wider = f == 128  # the original's widths are 64 or, with wider_ttnet, 128
    dataset = _guess_dataset(num_classes)
    size = DATASET_DEFAULTS.get(dataset, DATASET_DEFAULTS["cityscapes"])
    try:
        return ModelConfig(enc_layers=enc_layers, num_classes=num_classes, mid_features=mid,
                           ttnet_features=f // 2 if wider else f, wider_ttnet=wider,
                           batch_norm="trans_s2d.enc1.double_conv.0.conv.1.weight" in state,
                           height=size["height"], width=size["width"])
    except XTaskError as err:
        raise XTaskError(f"checkpoint shapes give an invalid model config: {err}") from None


def _require(state: Mapping[str, torch.Tensor], need: list[str]) -> None:
    missing = [k for k in need if k not in state]
    if missing:
        prefixes = sorted({k.split(".")[0] for k in state})
        raise XTaskError(f"not an xtask / xtask_mt model state dict: missing {short_list(missing, 2)} "
                         f"(top-level names found: {short_list(prefixes)})")


def _infer_stl_config(state: Mapping[str, torch.Tensor]) -> ModelConfig:
    """:func:`infer_config` for a single-task state dict (``pretrained_encoder.*`` + ``decoder.*``)."""
    _require(state, ["decoder.conv6.0.weight", "decoder.conv1.conv1.0.weight", "pretrained_encoder.layer0.0.weight"])
    out = int(state["decoder.conv6.0.weight"].shape[0])
    task = "depth" if out == 1 else "segmt"
    num_classes = out if task == "segmt" else DATASET_DEFAULTS["cityscapes"]["num_classes"]
    size = DATASET_DEFAULTS.get(_guess_dataset(num_classes), DATASET_DEFAULTS["cityscapes"])
    try:
        return ModelConfig(enc_layers=_encoder_depth(state), num_classes=num_classes,
                           mid_features=int(state["decoder.conv1.conv1.0.weight"].shape[0]),
                           height=size["height"], width=size["width"], task=task)
    except XTaskError as err:
        raise XTaskError(f"checkpoint shapes give an invalid model config: {err}") from None


def _encoder_depth(state: Mapping[str, torch.Tensor]) -> int:
    """ResNet depth (18 … 152) from the residual blocks per stage and the block type."""
    blocks = []
    for prefix in ("pretrained_encoder.layer1.1.", "pretrained_encoder.layer2.",
                   "pretrained_encoder.layer3.", "pretrained_encoder.layer4."):
        idx = {int(k[len(prefix):].split(".")[0]) for k in state
               if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()}
        blocks.append(max(idx) + 1 if idx else 0)
    bottleneck = "pretrained_encoder.layer1.1.0.conv3.weight" in state
    candidates = [n for n, counts in BLOCK_COUNTS.items()
                  if tuple(blocks) == counts and (n >= 50) == bottleneck]
    if len(candidates) != 1:
        raise XTaskError(f"cannot identify the ResNet encoder: blocks per stage {tuple(blocks)}, "
                         f"{'bottleneck' if bottleneck else 'basic'} blocks; expected one of "
                         + ", ".join(f"ResNet{n} {c}" for n, c in BLOCK_COUNTS.items()))
    return candidates[0]


# --------------------------------------------------------------------------- loading
def _build_and_load(config: ModelConfig, state: Mapping[str, Any], where: str) -> torch.nn.Module:
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise XTaskError(f"{where}: entries that are not tensors: {short_list(not_tensors)}")
    _check_finite(state, where)
    # Build on the meta device (no memory, no random init: loading a ResNet152 would otherwise
    # spend seconds initialising weights it then overwrites) and adopt the loaded tensors.
    with torch.device("meta"):
        model = build_model(config)  # XTaskNet, or STLNet for a single-task config
    problem = describe_key_mismatch(model.state_dict(), state)
    if problem:
        what = "" if config.task == "both" else f", single-task {config.task}"
        raise XTaskError(f"{where} does not match the model architecture "
                         f"(ResNet{config.enc_layers}, {config.num_classes} classes{what}): {problem}")
    # float16 storage comes back as float32
    state = {k: (v.float() if torch.is_floating_point(v) else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _config_from(raw: Any, where: str) -> ModelConfig:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise XTaskError(f"{where}: config metadata is not valid JSON") from None
    if not isinstance(raw, Mapping):
        raise XTaskError(f"{where}: config is missing or not a dict")
    return ModelConfig.from_dict(raw)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device | None = None, *,
                    max_bytes: int = DEFAULT_MAX_BYTES) -> Loaded:
    """Load any supported checkpoint (see module docstring) into an eval-mode XTaskNet.

    Args:
        path: checkpoint file.
        device: where the model goes; None = CUDA if available, else CPU.
        max_bytes: size cap checked before reading anything (default 2 GB).

    Returns :class:`Loaded`. Raises :class:`XTaskError` with a one-line reason for missing,
    empty, truncated, random or oversized files, unsafe or whole-model pickles, architecture
    mismatches (keys named) and NaN/Inf weights.
    """
    path = Path(path)
    dev = default_device(device)
    check_file_size(path, max_bytes)
    kind = sniff(path)
    where = path.name
    if kind == "safetensors":
        state, header = read_safetensors(path)
        if header.get("format") == FORMAT:
            config = _config_from(header.get("config"), where)
            try:
                meta = json.loads(header.get("meta") or "{}")
            except ValueError:
                raise XTaskError(f"{where}: meta metadata is not valid JSON") from None
            source = "xtask"
        elif "format" in header:
            raise XTaskError(f"{where}: unsupported checkpoint format {header['format']!r} "
                             f"(this xtask reads {FORMAT})")
        else:  # a bare state dict converted to safetensors: treat as the original layout
            state = strip_module_prefix(state)
            config = infer_config(state)
            meta = default_meta(config.num_classes)
            source = "xtask-mt"
    elif kind in ("zip", "pickle"):
        obj = torch_load_safe(path, kind)
        if not isinstance(obj, Mapping):
            raise XTaskError(f"{where} holds a {type(obj).__name__}, not a state dict")
        if "model" in obj and "config" in obj:  # our training state
            state = obj["model"]
            if not isinstance(state, Mapping):
                raise XTaskError(f"{where}: training state's 'model' entry is not a state dict")
            state = strip_module_prefix(state)
            config = _config_from(obj["config"], where)
            meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else default_meta(config.num_classes)
            meta = dict(meta)
            if not meta.get("training"):
                meta["training"] = {"epoch": obj.get("epoch"), "step": obj.get("step")}
            source = "train-state"
        else:
            if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
                obj = obj["state_dict"]  # a common wrapper around a plain state dict
            state = strip_module_prefix(obj)
            config = infer_config(state)
            meta = default_meta(config.num_classes)
            meta["name"] = path.parent.parent.name if path.parent.name == "model" else path.stem
            source = "xtask-mt"
    else:
        raise XTaskError(f"{where} is not a checkpoint (neither .safetensors nor a torch.save file)")
    model = _build_and_load(config, state, where)
    full = default_meta(config.num_classes, meta.get("dataset") if isinstance(meta, Mapping) else None)
    full.update(meta if isinstance(meta, Mapping) else {})
    if not full.get("name"):
        full["name"] = path.stem
    return Loaded(model=model.to(dev).eval(), config=config, meta=full, source=source, path=path)


# --------------------------------------------------------------------------- training state
def save_train_state(path: str | os.PathLike, *, model, optimizer=None, scheduler=None, balancer=None,
                     epoch: int = 0, step: int = 0, train_config=None, meta: Mapping | None = None) -> Path:
    """Save everything ``--resume`` needs with ``torch.save``, atomically, overwriting ``path``.

    Contents (plain tensors, numbers, strings, lists and dicts only, so
    ``torch.load(weights_only=True)`` reads it back): ``format``, ``model`` (state dict),
    ``config`` (ModelConfig dict), ``train_config`` (TrainConfig dict or None), ``optimizer``,
    ``scheduler``, ``balancer`` (their ``state_dict()`` or None), ``epoch``, ``step``, ``meta``.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise XTaskError("save_train_state needs an XTaskNet (a model with a ModelConfig .config)")

    def sd(obj):
        return None if obj is None else obj.state_dict()

    tc = train_config.to_dict() if hasattr(train_config, "to_dict") else train_config
    payload = {
        "format": TRAIN_STATE_FORMAT,
        "model": _plain_state(model),
        "config": config.to_dict(),
        "train_config": json.loads(json.dumps(tc, default=_json_default)) if tc is not None else None,
        "optimizer": sd(optimizer), "scheduler": sd(scheduler), "balancer": sd(balancer),
        "epoch": int(epoch), "step": int(step),
        "meta": json.loads(json.dumps(dict(meta), default=_json_default)) if meta is not None else None,
    }
    _check_plain(payload, "train state")
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return path


_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype)


def _check_plain(obj: Any, where: str) -> None:
    """Refuse to write what ``weights_only=True`` could not read back (numpy arrays, custom
    classes, ...): better a clear error now than an un-resumable ``last.state.pt`` later."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise XTaskError(f"{where}: key {k!r} is a {type(k).__name__}; only str/int keys can be saved")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise XTaskError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which a safe load cannot "
                     "read back; convert it to plain numbers, lists or tensors")


def load_train_state(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Read a :func:`save_train_state` file (safely) → the dict described there, on CPU."""
    path = Path(path)
    obj = read_tensor_file(path, max_bytes)
    if not isinstance(obj, dict) or "model" not in obj or "config" not in obj:
        raise XTaskError(f"{path.name} is not an xtask training state (needs 'model' and 'config')")
    return obj


# --------------------------------------------------------------------------- model card
def describe(loaded: Loaded) -> dict:
    """Flat facts for the app's model card: name, source format, parameter count, encoder,
    classes, dataset, depth kind, input size, TTNet/decoder widths, training summary, file size.
    ``task``: "both" (cross-task) or the one task of a single-task baseline (``ttnet_widths`` None:
    it has no transfer nets)."""
    cfg, meta = loaded.config, loaded.meta
    n_params = sum(p.numel() for p in loaded.model.parameters())
    training = dict(meta.get("training") or {})
    try:
        size = loaded.path.stat().st_size
    except OSError:
        size = None
    return {
        "name": meta.get("name") or loaded.path.stem,
        "path": str(loaded.path),
        "source": loaded.source,
        "source_label": {"xtask": "xtask checkpoint (.safetensors)",
                         "xtask-mt": "original xtask_mt state dict (imported)",
                         "train-state": "xtask training state (.pt)"}.get(loaded.source, loaded.source),
        "file_mb": None if size is None else round(size / 1e6, 2),
        "params": n_params,
        "params_millions": round(n_params / 1e6, 2),
        "enc_layers": cfg.enc_layers,
        "encoder": f"ResNet{cfg.enc_layers}",
        "num_classes": cfg.num_classes,
        "class_names": list(meta.get("class_names") or []),
        "dataset": meta.get("dataset", "unknown"),
        "depth_kind": meta.get("depth_kind", "disparity"),
        "depth_scale_note": meta.get("depth_scale_note", ""),
        "input_size": [cfg.height, cfg.width],
        "mid_features": cfg.mid_features,
        "task": cfg.task,
        "ttnet_widths": list(cfg.ttnet_widths) if cfg.task == "both" else None,
        "batch_norm": cfg.batch_norm,
        "training": training,
        # the loss's reduction mode; runs saved before the option existed used the masked means
        "loss_reduction": (training["train_config"].get("loss_reduction", "masked")
                           if isinstance(training.get("train_config"), dict) else None),
        "epochs": training.get("epochs", training.get("epoch")),
        "steps": training.get("steps", training.get("step")),
    }
