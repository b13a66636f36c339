"""The checkpoint chosen in the sidebar: a small state machine shared by every page.

The canonical choice is a label in ``st.session_state`` (it survives page switches) mirrored in
the address as ``?ckpt=<label>`` (so a reload, a bookmark or a link to a page keeps it). Labels
come from the shipped checkpoints and runs (:func:`xtask_core.io.paths.find_checkpoints`) plus
this session's extras (a typed path, an upload). A choice that fails to load leaves the
previous one in place and shows its one-line reason in the sidebar.

:func:`sidebar` draws the picker and returns the current :class:`ModelState`; it is idempotent
within one run, so a page works under ``app.py`` and alone (``AppTest.from_file(page)``).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitDuplicateElementKey

from xtask_app import cache, settings
from xtask_app.messages import USER_ERRORS, one_line
from xtask_core.checkpoint import describe
from xtask_core.data import labels as label_sets
from xtask_core.data.labels import CITYSCAPES_IGNORE
from xtask_core.errors import XTaskError
from xtask_core.evaluate.report import LABEL_SET_NAMES, LabelFit, labels_fit, model_label_set
from xtask_core.io.keys import sha1_hex
from xtask_core.io.paths import BEST_CHECKPOINT, CHECKPOINT_SUFFIXES, find_checkpoints

URL_PARAM = "ckpt"                   # ?ckpt=<label> in the address
_CKPT = "xtask_ckpt"                 # canonical selection (label), survives page switches
_CKPT_PATHS = "xtask_ckpt_paths"     # label -> path of extra (uploaded / typed) checkpoints
_CKPT_WIDGET = "_xtask_ckpt_widget"  # the selectbox's own key (mirrors _CKPT)
_CKPT_ERROR = "xtask_ckpt_error"     # last load error, shown in the sidebar until the next success
_CKPT_NOTE = "xtask_ckpt_note"       # the address named a checkpoint that is not available


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
        """K×3 uint8 class colours (the checkpoint's, else a fixed palette of its label set)."""
        pal = self.meta.get("palette")
        if pal is not None and len(pal) >= self.num_classes:
            return np.asarray(pal, dtype=np.uint8)[: self.num_classes]
        return label_sets.palette(self.label_set or "cityscapes", self.num_classes)

    @property
    def dataset(self) -> str:
        """The dataset the checkpoint says it was trained on ("synthetic", "cityscapes", "nyuv2", …)."""
        return str(self.meta.get("dataset") or "unknown")

    @property
    def label_set(self) -> str | None:
        """"cityscapes" (7 or 19 classes), "nyuv2" (13) or None (see report.model_label_set)."""
        return model_label_set(self.dataset, self.num_classes)

    @property
    def label_set_name(self) -> str:
        """The label set as people name it, e.g. "NYUv2 (13 classes)"."""
        name = LABEL_SET_NAMES.get(self.label_set or "", "unknown label set")
        return f"{name} ({self.num_classes} classes)"

    def fit(self, source: str | None) -> LabelFit:
        """Whether ground truth from image source ``source`` ("synthetic", "cityscapes",
        "nyuv2", "indoor"; None = an upload) can be shown and scored for this model."""
        return labels_fit(source, self.dataset, self.num_classes, self.depth_kind)

    @property
    def ignore_index(self) -> int:
        return int(self.meta.get("ignore_index", CITYSCAPES_IGNORE))

    @property
    def depth_kind(self) -> str:
        return self.meta.get("depth_kind", "disparity")

    @property
    def depth_unit(self) -> str:
        """Long unit of the depth output, for sentences."""
        return "metres" if self.depth_kind == "depth" else "disparity/256 (inverse depth)"

    @property
    def depth_unit_short(self) -> str:
        """Short unit of the depth output, for colour bars and table headers."""
        return "m" if self.depth_kind == "depth" else "disparity/256"


def shares_labels(a: ModelState, b: ModelState) -> bool:
    """True when two checkpoints predict the same classes (same label set and class count), so
    their segmentations and segmentation metrics can be compared class by class."""
    return a.label_set is not None and (a.label_set, a.num_classes) == (b.label_set, b.num_classes)


def model_state(label: str, path: str | os.PathLike) -> ModelState:
    """Load (cached) the checkpoint at ``path`` as a ModelState named ``label``."""
    loaded, predictor = cache.get_model(path)
    return ModelState(label, Path(path), loaded, predictor)


# --------------------------------------------------------------------------- the state machine
def choices() -> dict[str, Path]:
    """label -> path: discovered shipped checkpoints and runs, then this session's extras."""
    found = {c.label: c.path for c in find_checkpoints(settings.checkpoint_dir(), settings.runs_dir())}
    found.update(st.session_state.get(_CKPT_PATHS, {}))
    return found


def _try_select(label: str, path: Path) -> bool:
    """Load ``path``; on success make it current, on failure record the error and keep the old one."""
    try:
        cache.get_model(path)
    except USER_ERRORS as err:
        st.session_state[_CKPT_ERROR] = f"Could not load {label}: {' '.join(str(err).split())}"
        return False
    st.session_state[_CKPT] = label
    st.session_state.pop(_CKPT_ERROR, None)
    return True


def _on_pick() -> None:
    label = st.session_state[_CKPT_WIDGET]
    path = choices().get(label)
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
    for known, p in choices().items():
        if Path(p).resolve() == path.resolve():
            return _try_select(known, Path(p))
    if not path.is_file():
        st.session_state[_CKPT_ERROR] = f"Could not load {path}: no such file"
        return False
    label = label or f"path: {path.name} ({path.parent.name})"
    _add_extra(label, path)
    return st.session_state.get(_CKPT) == label


def _on_path() -> None:
    text = st.session_state.get("_xtask_ckpt_path", "")
    try:
        path = settings.resolve_user_path(text)
        if path.is_dir():
            path = path / BEST_CHECKPOINT
            if not path.is_file():
                raise XTaskError(f"{text} is a folder without best.safetensors")
    except XTaskError as err:
        st.session_state[_CKPT_ERROR] = str(err)
        return
    _add_extra(f"path: {path.name} ({path.parent.name})", path)


def _on_upload() -> None:
    up = st.session_state.get("_xtask_ckpt_upload")
    if up is None:
        return
    suffix = Path(up.name).suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        st.session_state[_CKPT_ERROR] = f"{up.name}: expected a .safetensors, .pth or .pt checkpoint"
        return
    if up.size > settings.MAX_CHECKPOINT_UPLOAD_MB * 2**20:
        st.session_state[_CKPT_ERROR] = f"{up.name} is larger than {settings.MAX_CHECKPOINT_UPLOAD_MB} MB"
        return
    data = up.getvalue()
    # Content-named file in a private temp folder: the same upload twice reuses the cache entry.
    folder = Path(tempfile.gettempdir()) / "xtask_uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha1_hex(data)[:16]}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    _add_extra(f"uploaded: {up.name}", path)


def _initial_choice(found: dict[str, Path]) -> None:
    """First run of a session (or the chosen file went away): the address's ``?ckpt=`` when it
    names an available checkpoint that loads, else the first one that loads, saying why."""
    st.session_state.pop(_CKPT, None)
    wanted = st.query_params.get(URL_PARAM)
    if wanted and wanted in found and _try_select(wanted, found[wanted]):
        return
    for label, path in found.items():
        if _try_select(label, path):
            break
    if wanted and wanted not in found:
        st.session_state[_CKPT_NOTE] = (f"The address asked for “{wanted}”, which is not available here "
                                        "(uploads and typed paths last one session); showing "
                                        f"{st.session_state.get(_CKPT, 'no checkpoint')} instead.")


def current_state() -> ModelState | None:
    """The selected checkpoint loaded (cached), or None when there is none."""
    label = st.session_state.get(_CKPT)
    path = choices().get(label) if label else None
    if path is None or not Path(path).exists():
        return None
    return model_state(label, path)


# --------------------------------------------------------------------------- drawing
def _picker(labels: list[str]) -> bool:
    """The selectbox and the 'load another' expander; False when already drawn in this run."""
    sb = st.sidebar
    try:
        sb.selectbox("Checkpoint", labels, key=_CKPT_WIDGET, on_change=_on_pick,
                     placeholder="no checkpoint found", help="Shipped checkpoints, runs/ and your own")
    except StreamlitDuplicateElementKey:
        return False
    with sb.expander("Load another checkpoint"):
        st.text_input("Path (file or run folder)", key="_xtask_ckpt_path",
                      help="Must lie inside checkpoints/, runs/ or a folder in XTASK_ALLOWED_ROOTS")
        st.button("Load path", key="_xtask_ckpt_path_btn", on_click=_on_path)
        st.file_uploader("Upload .safetensors or the original model.pth", key="_xtask_ckpt_upload",
                         type=["safetensors", "pth", "pt"], on_change=_on_upload,
                         max_upload_size=settings.MAX_CHECKPOINT_UPLOAD_MB)
    return True


def _model_card(state: ModelState) -> None:
    d = describe(state.loaded)
    lines = [f"**{d['name']}**",
             f"{d['encoder']} · {d['num_classes']} classes · {d['params_millions']} M parameters",
             f"input {state.config.height}×{state.config.width} · dataset: {d['dataset']}",
             f"depth: {d['depth_kind']} · {d['source_label']}"]
    training = state.meta.get("training") or {}
    bits = [f"{k} {training[k]}" for k in ("epochs", "steps") if k in training]
    if bits:
        lines.append("trained: " + ", ".join(bits))
    if d.get("loss_reduction"):
        lines.append(f"loss reduction: {d['loss_reduction']}"
                     + (" (the original's arithmetic)" if d["loss_reduction"] == "original" else " (masked means)"))
    with st.sidebar.container(border=True):
        st.markdown("  \n".join(lines))
        if d["dataset"] == "synthetic":
            st.caption("Trained on synthetic street scenes, not real photos.")


def _status(state: ModelState | None) -> None:
    """Errors, notes and the model card under the picker."""
    sb = st.sidebar
    if st.session_state.get(_CKPT_ERROR):
        sb.error(st.session_state[_CKPT_ERROR])
    if st.session_state.get(_CKPT_NOTE):
        sb.info(st.session_state.pop(_CKPT_NOTE))
    if state is None:
        sb.warning("No checkpoint loaded. Put a .safetensors file in checkpoints/ or train one "
                   "with `xtask train`.")
    else:
        _model_card(state)
    sb.caption(f"Device: {settings.device_label()}")


def sidebar() -> ModelState | None:
    """Draw the shared sidebar and return the current checkpoint (None when there is none).

    Idempotent within a run: a second call draws nothing and returns the same state.
    """
    cache.warm_kernels()
    found = choices()
    if st.session_state.get(_CKPT) not in found:
        _initial_choice(found)
    if st.session_state.get(_CKPT) in found:
        # Widget state is per page; the canonical selection lives in _CKPT, so copy it in.
        st.session_state[_CKPT_WIDGET] = st.session_state[_CKPT]
    if not _picker(list(found)):
        return current_state()
    state = None
    try:
        state = current_state()
    except USER_ERRORS as err:
        st.sidebar.error(f"Could not load the checkpoint: {one_line(err)}")
    if state is not None and st.query_params.get(URL_PARAM) != state.label:
        st.query_params[URL_PARAM] = state.label   # the address keeps the choice
    _status(state)
    return state


def choose_checkpoints(label: str, key: str, default_count: int = 2) -> list[ModelState]:
    """Multi-select of checkpoints (default: the current one + the next ones). Failed loads are
    reported with one line each and left out."""
    found = choices()
    labels = list(found)
    current = st.session_state.get(_CKPT)
    default = ([current] if current in labels else []) + [lb for lb in labels if lb != current]
    linked = [lb for lb in st.query_params.get_all("ckpts") if lb in labels]   # ?ckpts=A&ckpts=B (Dataset links)
    picked = st.multiselect(label, labels, default=linked or default[:default_count], key=key)
    states = []
    for lb in picked:
        try:
            states.append(model_state(lb, found[lb]))
        except USER_ERRORS as err:
            st.error(f"Could not load {lb}: {' '.join(str(err).split())}")
    return states
