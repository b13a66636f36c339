"""The Streamlit app's shared code (``streamlit run app.py``): everything a page needs beyond its
own widgets and layout.

- :mod:`xtask_app.settings`: folders (env overrides), allowed roots, samples, device line.
- :mod:`xtask_app.messages`: one-line error boxes.
- :mod:`xtask_app.cache`: cached model loading, predictions and image loading.
- :mod:`xtask_app.selection`: the sidebar checkpoint picker (state kept in the session and the URL).
- :mod:`xtask_app.pickers`: the image-source picker and the shipped-samples subset.
- :mod:`xtask_app.charts`: sized interactive figures and colour legends.
- :mod:`xtask_app.downloads`: PNG / CSV download buttons.
- :mod:`xtask_app.ui`: larger page sections (fine-tune progress and results, the energy study).

Importing any of these has no side effects: nothing runs, starts a thread or touches session
state until a page calls a function. Every page starts with ``state = selection.sidebar()``.
"""
