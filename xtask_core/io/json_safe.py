"""JSON-ready values for the files and reports we write (``summary.json``, ``--json`` results)."""
from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with NaN/Inf → None and numpy/torch arrays and scalars → Python lists and numbers,
    recursively through dicts (keys become strings), lists and tuples (which become lists)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
