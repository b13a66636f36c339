"""Where a records row's image lives and how to open it in another page (pure, no widgets).

A records file remembers its source (``{"kind", "dataset", "split", "root", "input_size"}``); a
row names its image (path relative to the root) and its ``index`` in the source's sorted list.
:func:`open_params` turns that into the address (``st.query_params``) that makes the
Predictions / Error maps / Compare pages open the same image: ``src=sample&image=NAME`` for a
shipped sample, ``src=dataset&ds=…&root=…&split=…&idx=…`` for any other dataset split,
``src=file&path=ROOT/IMAGE`` for an image of a plain folder (the pages' "Image file" source, which
again accepts only paths inside the allowed folders), plus ``ckpt=`` (the sidebar's checkpoint)
and, for Compare, ``ckpts=`` once per checkpoint.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

SAMPLE_PREFIX, SAMPLE_SUFFIX = "leftImg8bit/", "_leftImg8bit.png"


def sample_name(image: str) -> str | None:
    """``leftImg8bit/val/city/stem_leftImg8bit.png`` → ``val/city/stem`` (the Sample picker's
    name), None for names of another layout."""
    if image.startswith(SAMPLE_PREFIX) and image.endswith(SAMPLE_SUFFIX):
        return image[len(SAMPLE_PREFIX):-len(SAMPLE_SUFFIX)]
    return None


def open_params(source: Mapping, image: str, index: int, checkpoints: Sequence[str],
                samples_root: str | Path | None = None) -> dict[str, str | list[str]] | None:
    """Query parameters that open ``image`` of ``source`` with ``checkpoints`` (labels as the
    sidebar lists them; the first becomes ``ckpt``, all of them ``ckpts``). None when the image
    cannot be opened by address (an unknown source kind, a source without a root)."""
    params: dict[str, str | list[str]] = {}
    if checkpoints:
        params["ckpt"] = str(checkpoints[0])
        params["ckpts"] = [str(c) for c in checkpoints]
    kind, root = source.get("kind"), source.get("root")
    if kind == "folder" and root:     # the record's image is relative to the folder
        return params | {"src": "file", "path": str(Path(str(root)) / image)}
    if kind != "dataset" or not root:
        return None
    same = samples_root is not None and Path(str(root)).resolve() == Path(samples_root).resolve()
    name = sample_name(image)
    if same and name is not None and source.get("dataset") in ("synthetic", "cityscapes"):
        return params | {"src": "sample", "image": name}
    return params | {"src": "dataset", "ds": str(source.get("dataset")), "root": str(root),
                     "split": str(source.get("split") or "val"), "idx": str(int(index))}


def source_text(source: Mapping) -> str:
    """One line for people: ``synthetic val (/path), input 128×256`` / ``folder /path, …``."""
    size = source.get("input_size") or ()
    at = f", input {size[0]}×{size[1]}" if len(size) == 2 else ""
    if source.get("kind") == "dataset":
        return f"{source.get('dataset')} {source.get('split')} split ({source.get('root')}){at}"
    return f"folder {source.get('root')}{at}"
