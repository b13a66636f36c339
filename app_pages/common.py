"""Shared Streamlit helpers for every page (sidebar, pickers, cached model/predictions, downloads).

Every page starts with::

    from app_pages import common        # the repo root is put on sys.path first (see any page)
    state = common.sidebar()            # checkpoint picker + model card + device line
    if state is None:                   # no checkpoint could be loaded: message already shown
        st.stop()

``sidebar()`` is idempotent within one script run (a second call returns the same state without
drawing twice), so a page works both under ``app.py`` (st.navigation) and standalone
(``streamlit run app_pages/x.py`` or ``AppTest.from_file("app_pages/x.py")``).

Public helpers (stable; teammates' pages import them):

- ``REPO_ROOT`` (Path); ``checkpoint_dir()``, ``runs_dir()``, ``samples_dir()`` (Paths, honouring
  the env overrides ``XTASK_CHECKPOINT_DIR``, ``XTASK_RUNS_DIR``, ``XTASK_SAMPLES_DIR``);
  ``allowed_roots()`` (list[Path]; + ``XTASK_ALLOWED_ROOTS``); ``resolve_user_path(text)`` → Path
  inside the allowed roots or XTaskError.
- ``sidebar() -> ModelState | None``: the current checkpoint. ``ModelState`` fields: ``label``,
  ``path`` (Path of the loaded file), ``loaded`` (checkpoint.Loaded; never mutate its model:
  it is shared by all sessions), ``predictor`` (inference.Predictor); properties ``meta``,
  ``config``, ``class_names``, ``palette`` (K×3 uint8), ``ignore_index``, ``depth_kind``,
  ``depth_unit`` (str for axis labels).
- ``get_model(path) -> (Loaded, Predictor)``: cached by (resolved path, mtime, size).
- ``select_checkpoint(path, label=None) -> bool``: make ``path`` the current checkpoint (the
  Fine-tune page's "use the fine-tuned model now"); False + a sidebar error if it cannot load.
- ``predict(state, rgb, image_key, corruption=None) -> Prediction``: cached by checkpoint +
  image key + corruption params, so display-only widgets never re-run the model.
- ``image_picker(state, key) -> Picked | None``: samples / dataset split by index / upload.
  ``Picked`` fields: ``rgb`` (H×W×3 uint8, original size), ``name``, ``key`` (content hash),
  ``gt_seg`` (h×w int64 train ids, ignore = state.ignore_index, at the model size) or None,
  ``gt_depth`` (h×w float32 in model units, 0 = invalid, model size) or None.
- ``choose_checkpoints(label, key, default_count=2) -> list[ModelState]``: multi-select of
  checkpoints (compare pages).
- ``download_png(label, rgb, file_name, key)``, ``download_csv(label, df, file_name, key)``,
  ``download_pngs(panels, key)`` (an expander of PNG buttons): figures are downloaded as the
  array they show (viz colours, same ranges).
- Charts (figures from ``xtask_core.viz.figures``; this module only sizes and places them):
  ``seg_chart``, ``depth_chart``, ``value_chart``, ``rgb_chart`` (each returns the PNG-ready
  array it shows), ``point_cloud_chart``, ``chart`` (curves / bars / matrices), ``class_legend``,
  ``seg_pair_hover``, ``show_figure``; ``depth_unit(state)``; ``subset(state, n)``.
- ``show_error(err)``: one-line st.error for XTaskError / OSError / ValueError.
- ``device_label() -> str``: "GPU (name)" or "CPU".
- ``samples(): list[SampleFiles]`` in ``samples_dir()``.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # standalone `streamlit run app_pages/x.py` from elsewhere
    sys.path.insert(0, str(REPO_ROOT))

from xtask_core import explore  # noqa: E402
from xtask_core.errors import XTaskError  # noqa: E402
from xtask_core.evaluate import kernels  # noqa: E402

kernels.warm_in_background()  # the metric kernels load (or compile, once per machine) while the model does

MAX_CHECKPOINT_UPLOAD_MB = 500   # a ResNet-152 checkpoint is ~250 MB; refuse anything bigger
USER_ERRORS = (XTaskError, OSError, ValueError)

_CKPT = "xtask_ckpt"                 # canonical selection (label), survives page switches
_CKPT_PATHS = "xtask_ckpt_paths"     # label -> path of extra (uploaded / typed) checkpoints
_CKPT_WIDGET = "_xtask_ckpt_widget"  # the selectbox's own key (mirrors _CKPT)
_CKPT_ERROR = "xtask_ckpt_error"     # last load error, shown once in the sidebar


# --------------------------------------------------------------------------- folders
def checkpoint_dir() -> Path:
    return Path(os.environ.get("XTASK_CHECKPOINT_DIR") or REPO_ROOT / "checkpoints")


def runs_dir() -> Path:
    return Path(os.environ.get("XTASK_RUNS_DIR") or REPO_ROOT / "runs")


def samples_dir() -> Path:
    return Path(os.environ.get("XTASK_SAMPLES_DIR") or REPO_ROOT / "sample_images")


def allowed_roots() -> list[Path]:
    return explore.allowed_roots(REPO_ROOT)


def resolve_user_path(text: str, must_exist: bool = True) -> Path:
    """A path typed by the user, resolved inside :func:`allowed_roots` (else XTaskError)."""
    return explore.resolve_inside(text, allowed_roots(), REPO_ROOT, must_exist=must_exist)


def samples() -> list:
    return explore.find_samples(samples_dir())


def show_error(err: BaseException) -> None:
    """One-line error box; the message of an XTaskError is already one line."""
    msg = " ".join(str(err).split()) or type(err).__name__
    st.error(msg if isinstance(err, XTaskError) else f"{type(err).__name__}: {msg}")


def device_label() -> str:
    import torch
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return "CPU (no GPU found)"


# --------------------------------------------------------------------------- model state
@dataclass
class ModelState:
    """The checkpoint currently selected in the sidebar."""

    label: str
    path: Path
    loaded: object      # xtask_core.checkpoint.Loaded (model in eval mode, shared: never mutate)
    predictor: object   # xtask_core.inference.predictor.Predictor

    @property
    def meta(self) -> dict:
        return self.loaded.meta

    @property
    def config(self):
        return self.loaded.config

    @property
    def num_classes(self) -> int:
        return self.loaded.config.num_classes

    @property
    def class_names(self) -> list[str]:
        names = self.meta.get("class_names")
        return list(names) if names else [f"class {i}" for i in range(self.num_classes)]

    @property
    def palette(self) -> np.ndarray:
        pal = self.meta.get("palette")
        if pal is not None and len(pal) >= self.num_classes:
            return np.asarray(pal, dtype=np.uint8)[: self.num_classes]
        from xtask_core.data import (
            labels,  # fallback: a fixed palette for unknown datasets
        )
        return labels.palette("cityscapes" if self.num_classes in (7, 19) else "nyuv2",
                              self.num_classes)

    @property
    def ignore_index(self) -> int:
        return int(self.meta.get("ignore_index", 250))

    @property
    def depth_kind(self) -> str:
        return self.meta.get("depth_kind", "disparity")

    @property
    def depth_unit(self) -> str:
        return "metres" if self.depth_kind == "depth" else "disparity/256 (inverse depth)"


def _file_key(path: Path) -> tuple[str, float, int]:
    st_ = path.stat()
    return str(path.resolve()), st_.st_mtime, st_.st_size


@st.cache_resource(max_entries=6, show_spinner="Loading checkpoint…")
def _load_cached(path: str, mtime: float, size: int):
    # mtime and size are part of the cache key: a retrained file at the same path reloads.
    from xtask_core.checkpoint import load_checkpoint
    from xtask_core.inference.predictor import Predictor
    loaded = load_checkpoint(path)
    return loaded, Predictor(loaded)


def get_model(path: str | os.PathLike):
    """(Loaded, Predictor) for ``path``, shared across sessions (st.cache_resource)."""
    return _load_cached(*_file_key(Path(path)))


def _choices() -> dict[str, Path]:
    """label -> path: discovered shipped checkpoints and runs, then this session's extras."""
    found = {c.label: c.path for c in explore.find_checkpoints(checkpoint_dir(), runs_dir())}
    found.update(st.session_state.get(_CKPT_PATHS, {}))
    return found


def _try_select(label: str, path: Path) -> bool:
    """Load ``path``; on success make it current, on failure record the error and keep the old one."""
    try:
        get_model(path)
    except USER_ERRORS as err:
        st.session_state[_CKPT_ERROR] = f"Could not load {label}: {' '.join(str(err).split())}"
        return False
    st.session_state[_CKPT] = label
    st.session_state.pop(_CKPT_ERROR, None)
    return True


def _on_pick():
    label = st.session_state[_CKPT_WIDGET]
    path = _choices().get(label)
    if path is None or not _try_select(label, path):
        st.session_state[_CKPT_WIDGET] = st.session_state.get(_CKPT)  # revert the widget


def _add_extra(label: str, path: Path) -> None:
    if _try_select(label, path):
        extras = dict(st.session_state.get(_CKPT_PATHS, {}))
        extras[label] = path
        st.session_state[_CKPT_PATHS] = extras


def select_checkpoint(path: str | os.PathLike, label: str | None = None) -> bool:
    """Make the checkpoint at ``path`` the current one for this session (e.g. a run that just
    finished fine-tuning). A path the picker already lists (shipped, ``runs/``) keeps its
    label; any other is added as an extra entry named ``label`` (default "path: <file>
    (<folder>)"). Returns False, with the one-line reason shown in the sidebar, when it cannot
    be loaded; the previous selection then stays. Safe to call from a widget callback."""
    path = Path(path)
    for known, p in _choices().items():
        if Path(p).resolve() == path.resolve():
            return _try_select(known, Path(p))
    if not path.is_file():
        st.session_state[_CKPT_ERROR] = f"Could not load {path}: no such file"
        return False
    label = label or f"path: {path.name} ({path.parent.name})"
    _add_extra(label, path)
    return st.session_state.get(_CKPT) == label


def _on_path():
    text = st.session_state.get("_xtask_ckpt_path", "")
    try:
        path = resolve_user_path(text)
        if path.is_dir():
            path = path / "best.safetensors"
            if not path.is_file():
                raise XTaskError(f"{text} is a folder without best.safetensors")
    except XTaskError as err:
        st.session_state[_CKPT_ERROR] = str(err)
        return
    _add_extra(f"path: {path.name} ({path.parent.name})", path)


def _on_upload():
    up = st.session_state.get("_xtask_ckpt_upload")
    if up is None:
        return
    suffix = Path(up.name).suffix.lower()
    if suffix not in explore.CHECKPOINT_SUFFIXES:
        st.session_state[_CKPT_ERROR] = (f"{up.name}: expected a .safetensors, .pth or .pt checkpoint")
        return
    if up.size > MAX_CHECKPOINT_UPLOAD_MB * 2**20:
        st.session_state[_CKPT_ERROR] = f"{up.name} is larger than {MAX_CHECKPOINT_UPLOAD_MB} MB"
        return
    data = up.getvalue()
    # Content-named file in a private temp folder: the same upload twice reuses the cache entry.
    folder = Path(tempfile.gettempdir()) / "xtask_uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{explore.sha1_hex(data)[:16]}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    _add_extra(f"uploaded: {up.name}", path)


def _current_state() -> ModelState | None:
    label = st.session_state.get(_CKPT)
    path = _choices().get(label) if label else None
    if path is None or not Path(path).exists():
        return None
    loaded, predictor = get_model(path)
    return ModelState(label, Path(path), loaded, predictor)


def sidebar() -> ModelState | None:
    """Draw the shared sidebar and return the current checkpoint (None when there is none).

    Idempotent within a run: a second call draws nothing and returns the same state.
    """
    from streamlit.errors import StreamlitDuplicateElementKey

    choices = _choices()
    if st.session_state.get(_CKPT) not in choices:  # first run, or the file went away
        st.session_state.pop(_CKPT, None)
        for label, path in choices.items():  # first one that loads
            if _try_select(label, path):
                break
    labels = list(choices)
    if st.session_state.get(_CKPT) in labels:
        # Widget state is per page; the canonical selection lives in _CKPT, so copy it in.
        st.session_state[_CKPT_WIDGET] = st.session_state[_CKPT]
    sb = st.sidebar
    try:
        sb.selectbox("Checkpoint", labels, key=_CKPT_WIDGET, on_change=_on_pick,
                     placeholder="no checkpoint found", help="Shipped checkpoints, runs/ and your own")
    except StreamlitDuplicateElementKey:
        return _current_state()  # already drawn in this run
    with sb.expander("Load another checkpoint"):
        st.text_input("Path (file or run folder)", key="_xtask_ckpt_path",
                      help="Must lie inside checkpoints/, runs/ or a folder in XTASK_ALLOWED_ROOTS")
        st.button("Load path", key="_xtask_ckpt_path_btn", on_click=_on_path)
        st.file_uploader("Upload .safetensors or the original model.pth", key="_xtask_ckpt_upload",
                         type=["safetensors", "pth", "pt"], on_change=_on_upload,
                         max_upload_size=MAX_CHECKPOINT_UPLOAD_MB)
    if st.session_state.get(_CKPT_ERROR):
        sb.error(st.session_state[_CKPT_ERROR])
    state = None
    try:
        state = _current_state()
    except USER_ERRORS as err:
        sb.error(f"Could not load the checkpoint: {' '.join(str(err).split())}")
    if state is None:
        sb.warning("No checkpoint loaded. Put a .safetensors file in checkpoints/ or train one "
                   "with `xtask train`.")
    else:
        _model_card(state)
    sb.caption(f"Device: {device_label()}")
    return state


def _model_card(state: ModelState) -> None:
    from xtask_core.checkpoint import describe
    d = describe(state.loaded)
    lines = [f"**{d['name']}**",
             f"{d['encoder']} · {d['num_classes']} classes · {d['params_millions']} M parameters",
             f"input {state.config.height}×{state.config.width} · dataset: {d['dataset']}",
             f"depth: {d['depth_kind']} · {d['source_label']}"]
    training = state.meta.get("training") or {}
    bits = [f"{k} {training[k]}" for k in ("epochs", "steps") if k in training]
    if bits:
        lines.append("trained: " + ", ".join(bits))
    with st.sidebar.container(border=True):
        st.markdown("  \n".join(lines))
        if d["dataset"] == "synthetic":
            st.caption("Trained on synthetic street scenes, not real photos.")


def choose_checkpoints(label: str, key: str, default_count: int = 2) -> list[ModelState]:
    """Multi-select of checkpoints (default: the current one + the next ones). Failed loads are
    reported with one line each and left out."""
    choices = _choices()
    labels = list(choices)
    current = st.session_state.get(_CKPT)
    default = ([current] if current in labels else []) + [lb for lb in labels if lb != current]
    picked = st.multiselect(label, labels, default=default[:default_count], key=key)
    states = []
    for lb in picked:
        try:
            loaded, predictor = get_model(choices[lb])
            states.append(ModelState(lb, Path(choices[lb]), loaded, predictor))
        except USER_ERRORS as err:
            st.error(f"Could not load {lb}: {' '.join(str(err).split())}")
    return states


# --------------------------------------------------------------------------- predictions
@st.cache_data(max_entries=64, show_spinner=False)
def _predict_cached(model_key: tuple, image_key: str, corruption: tuple, _predictor, _rgb):
    # Only the three hashable keys identify the result; the model and image travel unhashed.
    return _predictor.predict(_rgb)


def predict(state: ModelState, rgb: np.ndarray, image_key: str, corruption: dict | None = None):
    """Prediction of ``state``'s model on ``rgb`` (H×W×3 uint8, already corrupted if
    ``corruption`` is given: the dict only keys the cache). Returns inference.Prediction at the
    model input size."""
    model_key = _file_key(state.path)
    corr = tuple(sorted((corruption or {}).items()))
    return _predict_cached(model_key, image_key, corr, state.predictor, rgb)


# --------------------------------------------------------------------------- image picker
@dataclass
class Picked:
    """The image chosen by :func:`image_picker`."""

    rgb: np.ndarray                  # H×W×3 uint8 at its own size
    name: str
    key: str                         # content hash, for caches
    gt_seg: np.ndarray | None = None    # h×w int64 train ids at the model size (ignore = state.ignore_index)
    gt_depth: np.ndarray | None = None  # h×w float32 model units at the model size, 0 = invalid


@st.cache_data(max_entries=128, show_spinner=False)
def _load_sample(image: str, label: str | None, disparity: str | None, num_classes: int,
                 height: int, width: int):
    return explore.load_sample(image, label, disparity, num_classes, height, width)


@st.cache_data(max_entries=64, show_spinner=False)
def _load_upload(data: bytes):
    from xtask_core.io.images import load_image
    return load_image(data)


@st.cache_data(max_entries=64, show_spinner=False)
def _load_dataset_item(dataset: str, root: str, split: str, index: int, num_classes: int,
                       height: int, width: int):
    return explore.load_dataset_item(dataset, root, split, index, num_classes, height, width)


def image_picker(state: ModelState, key: str, sources=("Sample", "Dataset split", "Upload"),
                 container=None) -> Picked | None:
    """Image source radio + the matching picker. Errors show one st.error line and return None."""
    box = container or st
    cfg = state.config
    options = list(sources)
    if not samples() and "Sample" in options and len(options) > 1:
        options.remove("Sample")
    src = box.radio("Image source", options, horizontal=True, key=f"{key}_src")
    try:
        if src == "Sample":
            found = samples()
            if not found:
                box.info(f"No samples found in {samples_dir()}.")
                return None
            names = [s.name for s in found]
            name = box.selectbox("Sample image", names, key=f"{key}_sample")
            s = found[names.index(name)]
            rgb, gt_seg, gt_depth = _load_sample(str(s.image), s.label and str(s.label),
                                                 s.disparity and str(s.disparity),
                                                 cfg.num_classes, cfg.height, cfg.width)
            return Picked(rgb, name, explore.array_key(rgb), gt_seg, gt_depth)
        if src == "Dataset split":
            c1, c2, c3, c4 = box.columns([1, 3, 1, 1])
            ds = c1.selectbox("Dataset", ["synthetic", "cityscapes", "nyuv2"], key=f"{key}_ds")
            root = c2.text_input("Root folder", key=f"{key}_root",
                                 value=str(samples_dir()) if ds != "nyuv2" else "")
            split = c3.selectbox("Split", ["val", "train", "test"], key=f"{key}_split")
            index = int(c4.number_input("Index", min_value=0, value=0, step=1, key=f"{key}_idx"))
            if not root.strip():
                box.info("Type the dataset root folder.")
                return None
            path = resolve_user_path(root)
            rgb, gt_seg, gt_depth = _load_dataset_item(ds, str(path), split, index,
                                                       cfg.num_classes, cfg.height, cfg.width)
            return Picked(rgb, f"{ds}:{split}[{index}]", explore.array_key(rgb), gt_seg, gt_depth)
        up = box.file_uploader("Image (PNG, JPEG, WebP, BMP, TIFF…)", key=f"{key}_upload",
                               type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"])
        if up is None:
            box.info("Upload an image to run the model on it.")
            return None
        data = up.getvalue()
        rgb = _load_upload(data)
        return Picked(rgb, up.name, explore.sha1_hex(data))
    except USER_ERRORS as err:
        with box.container():
            show_error(err)
        return None


# --------------------------------------------------------------------------- downloads
def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of an H×W×3 (or H×W) uint8 array."""
    from xtask_core.io.images import to_png_bytes
    return to_png_bytes(np.ascontiguousarray(rgb))


def download_png(label: str, rgb: np.ndarray, file_name: str, key: str, container=None) -> None:
    (container or st).download_button(label, png_bytes(rgb), file_name=file_name,
                                      mime="image/png", key=key, on_click="ignore")


def download_csv(label: str, df, file_name: str, key: str, container=None) -> None:
    (container or st).download_button(label, df.to_csv(index=False).encode(), file_name=file_name,
                                      mime="text/csv", key=key, on_click="ignore")


def download_pngs(panels: dict[str, np.ndarray], key: str, per_row: int = 4) -> None:
    """One PNG download button per panel (name → H×W×3 uint8, exactly the colours shown), tucked
    into a collapsed expander so they do not crowd the page."""
    if not panels:
        return
    items = list(panels.items())
    with st.expander(f"Download the {len(items)} panels above as PNG images"):
        for start in range(0, len(items), per_row):
            cols = st.columns(per_row)
            for col, (name, rgb) in zip(cols, items[start:start + per_row]):
                download_png(f"{name.replace('_', ' ')} (PNG)", rgb, f"{name}.png", key=f"{key}_{name}",
                             container=col)


# --------------------------------------------------------------------------- panels and charts
# Figures come from xtask_core.viz.figures (interactive, hover values, colour bars in real units);
# the PNGs offered for download come from xtask_core.viz.colour with the same colour maps and ranges.
# What stays here is layout glue: figure height from the image's aspect ratio, a shared chart
# style, and the mapping from a ModelState to class names / palette / depth units.
def _cmaps() -> list[str]:
    from xtask_core.viz.colour import COLORMAPS
    return list(COLORMAPS)


CMAPS = _cmaps()
MAIN_WIDTH_PX = 900    # approximate main-column width in the wide layout on a laptop screen
TITLE_PX = 34          # figure title strip
COLORBAR_PX = 66       # horizontal colour bar with its title, under a heatmap


def sample_arrays(state: ModelState, s) -> tuple:
    """(rgb, gt_seg, gt_depth) of an explore.SampleFiles at ``state``'s model size (cached)."""
    cfg = state.config
    return _load_sample(str(s.image), s.label and str(s.label), s.disparity and str(s.disparity),
                        cfg.num_classes, cfg.height, cfg.width)


def depth_range(state: ModelState, pred, *extra) -> tuple[float, float]:
    """Shared colour range of a prediction's direct and transferred depth (+ extra maps)."""
    return explore.depth_range([pred.depth, pred.depth_t, *extra])


def depth_unit(state: ModelState) -> str:
    """Short unit of the model's depth output, for colour bars and tables."""
    return "m" if state.depth_kind == "depth" else "disparity/256"


def prediction_panels(state: ModelState, pred, cmap: str = "magma") -> dict[str, np.ndarray]:
    """Colourised H×W×3 uint8 panels ``seg``, ``seg_t``, ``depth``, ``depth_t`` of a Prediction
    (depth maps share one colour range)."""
    from xtask_core.viz import colour as viz
    vmin, vmax = depth_range(state, pred)
    return {"seg": viz.colorize_seg(pred.seg, state.palette),
            "seg_t": viz.colorize_seg(pred.seg_t, state.palette),
            "depth": viz.colorize_depth(pred.depth, cmap, vmin, vmax),
            "depth_t": viz.colorize_depth(pred.depth_t, cmap, vmin, vmax)}


def _size_image_figure(fig, shape: tuple[int, ...], ncols: int, extra_px: int):
    """Height ≈ column width × h / w (column width estimated from ``ncols``), so there are no
    empty bands around the image; spare height goes below it."""
    h, w = shape[:2]
    img_px = (MAIN_WIDTH_PX / max(1, ncols)) * h / max(1, w)
    fig.update_layout(height=int(min(640, max(90, img_px)) + TITLE_PX + extra_px),
                      title=dict(font=dict(size=14), y=0.99, yanchor="top"),
                      margin=dict(l=0, r=0, t=TITLE_PX, b=extra_px))
    fig.update_yaxes(constraintoward="top")
    return fig


def _horizontal_colorbar(fig):
    fig.update_traces(colorbar=dict(orientation="h", thickness=10, len=1.0, y=-0.02, yanchor="top",
                                    title=dict(side="bottom"), tickfont=dict(size=10)))
    return fig


_BUILDERS = {"image": "image_figure", "heatmap": "heatmap_figure", "seg": "seg_overlay_figure"}


@st.cache_resource(max_entries=128, show_spinner=False)
def _image_like_figure(kind: str, ncols: int, args: tuple, kwargs: tuple):
    # Building a figure with per-pixel hover text costs ~0.1 s (plotly validates every array);
    # display-only reruns (opacity, panels, page switches) reuse it. Keyed by content: Streamlit
    # hashes the arrays. Shared by all sessions, so the figure is never mutated after this.
    from xtask_core.viz import figures
    fig = getattr(figures, _BUILDERS[kind])(*args, **dict(kwargs))
    extra_px = 0
    if kind == "heatmap":
        fig, extra_px = _horizontal_colorbar(fig), COLORBAR_PX
    return _size_image_figure(fig, np.shape(args[0]), ncols, extra_px)


def show_figure(kind: str, *args, key: str | None = None, ncols: int = 3, **kwargs) -> None:
    """Build (cached) and draw ``xtask_core.viz.figures.<image_figure | heatmap_figure |
    seg_overlay_figure>(*args, **kwargs)`` sized to the image's aspect ratio and ``ncols``."""
    fig = _image_like_figure(kind, ncols, args, tuple(sorted(kwargs.items())))
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def class_legend(state: ModelState, labels: np.ndarray | None = None) -> None:
    """One line of colour chips naming the classes (only those in ``labels`` when given)."""
    import html
    present = set(np.unique(labels).tolist()) if labels is not None else None
    chips = []
    for i, (name, (r, g, b)) in enumerate(zip(state.class_names, state.palette.tolist())):
        if present is not None and i not in present:
            continue
        chips.append(f"<span style='white-space:nowrap;margin-right:0.9em'><span style='display:inline-block;"
                     f"width:0.9em;height:0.9em;border-radius:2px;vertical-align:-0.1em;margin-right:0.3em;"
                     f"background:rgb({r},{g},{b})'></span>{html.escape(name)}</span>")
    if chips:
        st.markdown("<div style='font-size:0.85em;line-height:1.9'>" + "".join(chips) + "</div>",
                    unsafe_allow_html=True)


def _class_names(state: ModelState, labels: np.ndarray) -> np.ndarray:
    from xtask_core.viz.figures import class_name_map
    return class_name_map(labels, state.class_names, state.ignore_index, ignore_name="void")


def seg_chart(state: ModelState, labels: np.ndarray, title: str, rgb: np.ndarray | None = None,
              alpha: float = 1.0, key: str | None = None, ncols: int = 3) -> np.ndarray:
    """Plot an h×w label map (class name on hover), optionally blended over ``rgb`` (any size,
    resized to the labels) with opacity ``alpha``; void pixels show the plain image (black
    without one). Returns the h×w×3 uint8 image shown (for downloads)."""
    from xtask_core.viz import colour as viz
    labels = np.asarray(labels)
    seg_rgb = viz.colorize_seg(labels, state.palette, ignore_index=state.ignore_index)
    if rgb is None:
        base, alpha = seg_rgb, 1.0
    else:
        base = rgb if rgb.shape[:2] == labels.shape else viz.resize_bilinear(rgb, *labels.shape)
    show_figure("seg", base, labels, state.palette, tuple(state.class_names), alpha, state.ignore_index,
                title=title, key=key, ncols=ncols)
    valid = (labels >= 0) & (labels < state.num_classes) & (labels != state.ignore_index)
    return viz.overlay(base, seg_rgb, alpha, mask=valid)


def value_chart(values: np.ndarray, title: str, units: str, cmap: str = "inferno",
                vmin: float | None = None, vmax: float | None = None, key: str | None = None,
                hover: dict | None = None, valid: np.ndarray | None = None, ncols: int = 3,
                colorbar_title: str | None = None) -> np.ndarray:
    """Heatmap of an h×w float map in ``units`` (NaN / ``valid`` False = no data, drawn as a
    gap) with a horizontal colour bar in those units; ``hover`` adds named h×w maps under the
    cursor. ``None`` range ends are the robust 1–99 % range. Returns the PNG-ready h×w×3 uint8
    colouring of the same map and range (no-data pixels black)."""
    from xtask_core.viz import colour as viz
    v = np.asarray(values, np.float32)
    if vmin is None or vmax is None:
        lo, hi = viz.auto_range(v, valid)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    show_figure("heatmap", v, cmap, units=units, colorbar_title=colorbar_title, zmin=float(vmin), zmax=float(vmax),
                valid=valid, hover=hover, title=title, key=key, ncols=ncols)
    return viz.colorize_values(v, cmap, vmin, vmax, valid)


def depth_chart(state: ModelState, depth: np.ndarray, title: str, cmap: str, vmin: float,
                vmax: float, key: str | None = None, ncols: int = 3) -> np.ndarray:
    """Depth/disparity heatmap in model units; for disparity models the hover also gives metres
    (Cityscapes camera). Values ≤ 0 (no depth: sky in the ground truth) are gaps. Returns the
    coloured h×w×3 uint8 image."""
    d = np.asarray(depth, np.float32)
    if not (d > 0).any():   # e.g. an untrained model: say so instead of drawing an empty box
        st.markdown(f"**{title}**")
        st.info("No pixel has a positive depth value, so there is nothing to draw.")
        from xtask_core.viz import colour as viz
        return viz.colorize_values(d, cmap, vmin, vmax, d > 0)
    hover = None
    if state.depth_kind == "disparity":
        hover = {"≈ metres": explore.metric_depth(d, "disparity", max_metres=np.inf)}
    return value_chart(d, title, depth_unit(state), cmap, vmin, vmax, key=key, hover=hover,
                       valid=d > 0, ncols=ncols, colorbar_title="depth" if state.depth_kind == "depth" else None)


def rgb_chart(rgb: np.ndarray, title: str, hover: dict | None = None, key: str | None = None,
              ncols: int = 3) -> np.ndarray:
    """Plot an h×w×3 uint8 image like the other panels, with named h×w maps (e.g. class names
    from :func:`seg_pair_hover`) under the cursor; returns ``rgb`` (for downloads)."""
    show_figure("image", rgb, hover, title=title, key=key, ncols=ncols)
    return rgb


def seg_pair_hover(state: ModelState, pred_labels: np.ndarray, target: np.ndarray,
                   what: str = "true") -> dict[str, np.ndarray]:
    """Hover maps for an error / difference map: ``{what: class of target, "predicted": class
    of pred}`` (h×w strings)."""
    return {what: _class_names(state, target), "predicted": _class_names(state, pred_labels)}


def point_cloud_chart(state: ModelState, pred, colour_by: str = "segmentation", key: str | None = None,
                      max_points: int = 15000) -> None:
    """The direct depth lifted to 3-D (metres; the Cityscapes camera for disparity models, an
    assumed 60° field of view for metric ones), coloured by the direct segmentation or the image."""
    from xtask_core.viz import colour as viz
    from xtask_core.viz import figures
    h, w = pred.depth.shape
    colours = (viz.colorize_seg(pred.seg, state.palette) if colour_by == "segmentation"
               else pred.input_rgb)
    fig = figures.point_cloud_figure(explore.metric_depth(pred.depth, state.depth_kind),
                                     colours, intrinsics=explore.pinhole_intrinsics(state.depth_kind, h, w),
                                     max_points=max_points, units="m")
    fig.update_layout(height=460, margin=dict(l=0, r=0, t=0, b=0))
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def chart(fig, key: str, height: int = 340) -> None:
    """A non-image plotly figure (curves, bars, matrices) at a fixed height."""
    fig.update_layout(height=height, title=dict(font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def metrics_columns(state: ModelState, unit: str | None = None) -> dict:
    """``st.dataframe`` column labels with units for :func:`explore.metrics_row` tables
    (``unit`` overrides the depth unit, e.g. "model units" for mixed checkpoints)."""
    unit = unit or depth_unit(state)
    return {"pixel acc": "pixel acc (%)", "mIoU": "mIoU (%)", "δ<1.25": "δ<1.25 (%)",
            "Abs": f"Abs ({unit})", "RMSE": f"RMSE ({unit})",
            "Abs Rel": st.column_config.NumberColumn("Abs Rel", help="mean |p − t| / t (a ratio)"),
            "mIoU per image (original)": st.column_config.NumberColumn(
                "mIoU per image (%)", help="The original code's mean of per-image mIoUs")}


def subset(state: ModelState, n: int) -> tuple[list, list, list, list]:
    """The first ``n`` samples through ``state``'s model: (predictions, gt_segs, gt_depths, names).
    Every prediction is cached, so re-drawing never re-runs the model."""
    preds, segs, deps, names = [], [], [], []
    for s in samples()[:n]:
        rgb, gs, gd = sample_arrays(state, s)
        preds.append(predict(state, rgb, explore.array_key(rgb)))
        segs.append(gs)
        deps.append(gd)
        names.append(s.name)
    return preds, segs, deps, names
