"""AppTest of the Home page and of the shared sidebar (checkpoint picker)."""
from __future__ import annotations

from tests.app_helpers import app_text, checkpoint_box, make_app_env, run_page


def test_home_renders_live_figure(tmp_path, monkeypatch):
    at = run_page("home", make_app_env(tmp_path), monkeypatch)
    assert not at.exception
    assert at.title[0].value == "Cross-task consistency explorer"
    assert len(at.get("image")) == 5                 # input, seg, seg_t, depth, depth_t
    text = app_text(at)
    assert "task-transfer nets" in text and "synthetic" in text and "Running on" in text
    box = checkpoint_box(at)
    assert box.options == ["shipped: tiny_a", "shipped: tiny_b"] and box.value == "shipped: tiny_a"
    assert "tiny a" in app_text(at)                   # the model card names the checkpoint


def test_home_without_any_checkpoint(tmp_path, monkeypatch):
    env = make_app_env(tmp_path, n_checkpoints=0)
    at = run_page("home", env, monkeypatch)
    assert not at.exception
    assert any("No checkpoint loaded" in w.value for w in at.sidebar.warning)
    assert any("Load a checkpoint" in i.value for i in at.info)


def test_failed_load_keeps_previous_model(tmp_path, monkeypatch):
    env = make_app_env(tmp_path)
    (tmp_path / "checkpoints" / "zz_broken.safetensors").write_bytes(b"not a checkpoint")
    at = run_page("home", env, monkeypatch)
    assert checkpoint_box(at).value == "shipped: tiny_a"

    checkpoint_box(at).select("shipped: zz_broken").run()      # a broken file in the list
    assert not at.exception
    assert checkpoint_box(at).value == "shipped: tiny_a"       # reverted
    assert any("Could not load shipped: zz_broken" in e.value for e in at.sidebar.error)
    assert "tiny a" in app_text(at)

    checkpoint_box(at).select("shipped: tiny_b").run()         # a good switch still works
    assert checkpoint_box(at).value == "shipped: tiny_b" and "tiny b" in app_text(at)
    assert not at.sidebar.error

    def load_path(text):  # re-fetch the widgets: elements of an earlier run are stale
        next(t for t in at.sidebar.text_input if t.label.startswith("Path")).input(text)
        next(b for b in at.sidebar.button if b.label == "Load path").click().run()

    load_path("/etc/passwd")
    assert any("outside the allowed folders" in e.value for e in at.sidebar.error)
    assert checkpoint_box(at).value == "shipped: tiny_b"

    bad = tmp_path / "extra.safetensors"                       # inside XTASK_ALLOWED_ROOTS, but junk
    bad.write_bytes(b"\x00" * 64)
    load_path(str(bad))
    assert any("Could not load" in e.value for e in at.sidebar.error)
    assert checkpoint_box(at).value == "shipped: tiny_b"

    load_path(str(tmp_path / "checkpoints" / "tiny_a.safetensors"))      # a good typed path
    assert not at.exception and not at.sidebar.error
    assert checkpoint_box(at).value.startswith("path: tiny_a.safetensors")


def _pick_app():
    """A one-button app: the shared sidebar + a button calling selection.select_checkpoint($PICK)."""
    import os

    import streamlit as st

    from xtask_app import selection
    selection.sidebar()
    st.button("use it", key="use", on_click=selection.select_checkpoint, args=(os.environ["PICK"],))


def test_select_checkpoint_switches_adds_and_refuses(tmp_path, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.app_helpers import set_env, write_checkpoint
    env = make_app_env(tmp_path)
    set_env(monkeypatch, env)
    st.cache_resource.clear()
    mine = write_checkpoint(tmp_path / "elsewhere" / "mine.safetensors", seed=3, name="mine")
    monkeypatch.setenv("PICK", str(tmp_path / "checkpoints" / "tiny_b.safetensors"))
    at = AppTest.from_function(_pick_app, default_timeout=60).run()
    assert checkpoint_box(at).value == "shipped: tiny_a"
    at.button(key="use").click().run()                        # a listed file keeps its label
    assert not at.exception and checkpoint_box(at).value == "shipped: tiny_b" and "tiny b" in app_text(at)

    monkeypatch.setenv("PICK", str(mine))                     # an unlisted file becomes an extra entry
    at.run()                                                  # (a callback gets the args of the last run)
    at.button(key="use").click().run()
    assert checkpoint_box(at).value == "path: mine.safetensors (elsewhere)" and "mine" in app_text(at)

    monkeypatch.setenv("PICK", str(tmp_path / "gone.safetensors"))
    at.run()
    at.button(key="use").click().run()                        # missing: one-line error, selection kept
    assert any("no such file" in e.value for e in at.sidebar.error)
    assert checkpoint_box(at).value == "path: mine.safetensors (elsewhere)"


def test_checkpoint_choice_lives_in_the_address(tmp_path, monkeypatch):
    """A page opened by its address (reload, bookmark, link) keeps the checkpoint named in ?ckpt=."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.app_helpers import PAGE_DIR, set_env
    set_env(monkeypatch, make_app_env(tmp_path))
    st.cache_resource.clear()
    at = AppTest.from_file(str(PAGE_DIR / "home.py"), default_timeout=60)
    at.query_params["ckpt"] = "shipped: tiny_b"
    at.run()
    assert not at.exception and checkpoint_box(at).value == "shipped: tiny_b" and "tiny b" in app_text(at)
    checkpoint_box(at).select("shipped: tiny_a").run()                # a new choice updates the address
    assert at.query_params["ckpt"] == ["shipped: tiny_a"] or at.query_params["ckpt"] == "shipped: tiny_a"

    fresh = AppTest.from_file(str(PAGE_DIR / "home.py"), default_timeout=60)
    fresh.query_params["ckpt"] = "run: gone"                           # not available: say so, use the first
    fresh.run()
    assert not fresh.exception and checkpoint_box(fresh).value == "shipped: tiny_a"
    assert any("“run: gone”, which is not available" in i.value for i in fresh.sidebar.info)


def test_page_runs_from_a_relative_path(tmp_path, monkeypatch):
    """AppTest.from_file resolves a path relative to the test file: pages import xtask_app
    (installed with the project), never through sys.path tricks."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.app_helpers import set_env
    set_env(monkeypatch, make_app_env(tmp_path))
    st.cache_resource.clear()
    at = AppTest.from_file("../app_pages/home.py", default_timeout=60).run()
    assert not at.exception and at.title[0].value == "Cross-task consistency explorer"


def test_model_card_names_the_loss_reduction(tmp_path, monkeypatch):
    from tests.app_helpers import tiny_model
    from xtask_core.checkpoint import default_meta, save_checkpoint

    env = make_app_env(tmp_path, n_checkpoints=0)
    meta = default_meta(7, "synthetic")
    meta.update(name="old run", training={"epochs": 2, "train_config": {"lr": 1e-3}})  # saved before the option
    save_checkpoint(tmp_path / "checkpoints" / "old.safetensors", tiny_model(0), meta)
    at = run_page("home", env, monkeypatch)
    assert not at.exception
    assert "loss reduction: masked (masked means)" in app_text(at)
