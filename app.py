"""xtask explorer: `streamlit run app.py`. Navigation only: the list below is the whole app.

Pages are app_pages/*.py (widgets and layout only); what they share is the importable package
xtask_app/ (installed with the project, so neither this file nor a page touches sys.path).

Why app_pages/ and not pages/: Streamlit (1.67) treats a folder named pages/ next to the main
script as an automatic page folder until this script has run once in the server process. A
fresh server whose first request is a deep link (e.g. /dashboard) therefore shows the folder's
file names, plus "app", as the menu instead of the titles below. Checked again with only page
files in pages/ (no helpers): still so. Any other folder name avoids it.
"""
from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="xtask: cross-task consistency explorer", page_icon=":material/alt_route:",
                   layout="wide")
st.navigation([
    st.Page(PAGES / "home.py", title="Home", icon=":material/home:", default=True),
    st.Page(PAGES / "predictions.py", title="Predictions", icon=":material/image:"),
    st.Page(PAGES / "error_maps.py", title="Error maps", icon=":material/error:"),
    st.Page(PAGES / "compare.py", title="Compare checkpoints", icon=":material/compare:"),
    st.Page(PAGES / "finetune.py", title="Fine-tune", icon=":material/tune:"),
    st.Page(PAGES / "dashboard.py", title="Training dashboard", icon=":material/monitoring:"),
    st.Page(PAGES / "learn.py", title="Learn", icon=":material/school:"),
    st.Page(PAGES / "dataset.py", title="Dataset", icon=":material/dataset:"),
]).run()
