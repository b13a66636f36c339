"""Download buttons: figures are downloaded as the array they show (same colours and ranges),
tables as CSV. Buttons use ``on_click="ignore"``, so a download never reruns the page."""
from __future__ import annotations

import numpy as np
import streamlit as st

from xtask_core.io.images import to_png_bytes


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of an H×W×3 (or H×W) uint8 array."""
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
