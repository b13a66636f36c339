"""One-line error boxes: the app never shows a traceback for a user-fixable problem."""
from __future__ import annotations

import streamlit as st

from xtask_core.errors import XTaskError

# Errors a user can fix (bad file, path outside the allowed folders, wrong value): one line each.
USER_ERRORS = (XTaskError, OSError, ValueError)


def one_line(err: BaseException) -> str:
    """The error's message on one line; the type name is prefixed unless it is an XTaskError."""
    msg = " ".join(str(err).split()) or type(err).__name__
    return msg if isinstance(err, XTaskError) else f"{type(err).__name__}: {msg}"


def show_error(err: BaseException, container=None) -> None:
    """One-line ``st.error`` box for ``err`` (in ``container`` when given)."""
    (container or st).error(one_line(err))
