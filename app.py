"""xtask explorer: `streamlit run app.py`.

Navigation only: st.navigation + st.Page; the list below is the whole app.
The page files live in app_pages/, not pages/: Streamlit (1.67) treats a folder named pages/
as an automatic page folder until this script has run once in the server process, so a fresh
server whose first request was a deep link (e.g. /dashboard) listed every file there, helpers
included, as the menu. app_pages/common.py is a helper module, not a page. Every page draws
the shared sidebar itself through ``common.sidebar()`` (idempotent), so each page also runs
standalone (`streamlit run app_pages/x.py`, `AppTest.from_file("app_pages/x.py")`).
"""
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
PAGES = HERE / "app_pages"

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
