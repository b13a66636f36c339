"""Page sections too large for a page file: drawn with Streamlit, logic delegated to xtask_core."""
