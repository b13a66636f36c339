"""xtask explorer: `streamlit run app.py`.

Navigation only. We use st.navigation + st.Page, which turns OFF Streamlit's automatic
discovery of the pages/ folder: the list below is the whole app (pages/common.py is a helper
module, not a page). Caveat (Streamlit 1.67): until this script has run once in a server
process, Streamlit still treats pages/ as a v1 page folder, so a fresh server whose very first
request is a deep link (e.g. /dashboard) shows the folder's files as the menu for that session. Every page draws the shared sidebar itself through
``common.sidebar()`` (idempotent), so each page also runs standalone
(`streamlit run pages/x.py`, `AppTest.from_file("pages/x.py")`).
"""
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
PAGES = HERE / "pages"

st.set_page_config(page_title="xtask: cross-task consistency explorer", page_icon=":material/alt_route:", layout="wide")

_pages = [
    st.Page(PAGES / "home.py", title="Home", icon=":material/home:", default=True),
    st.Page(PAGES / "predictions.py", title="Predictions", icon=":material/image:"),
    st.Page(PAGES / "error_maps.py", title="Error maps", icon=":material/error:"),
    st.Page(PAGES / "compare.py", title="Compare checkpoints", icon=":material/compare:"),
]
# Pages owned by the fine-tuning work; listed when present so the app runs while they are written.
for name, title, icon in (("finetune.py", "Fine-tune", ":material/tune:"), ("dashboard.py", "Training dashboard", ":material/monitoring:")):
    if (PAGES / name).is_file():
        _pages.append(st.Page(PAGES / name, title=title, icon=icon))
_pages.append(st.Page(PAGES / "learn.py", title="Learn", icon=":material/school:"))

st.navigation(_pages).run()
