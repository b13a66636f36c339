"""The app's shape: an importable xtask_app package without import-time side effects, thin
page files, no sys.path manipulation anywhere in the app."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "app_pages").glob("*.py"))
APP_FILES = [ROOT / "app.py", *PAGES, *sorted((ROOT / "xtask_app").rglob("*.py"))]


def test_every_page_is_listed_and_thin():
    listed = (ROOT / "app.py").read_text()
    assert PAGES and all(f'"{p.name}"' in listed for p in PAGES)        # nothing but pages in the folder
    for page in PAGES:
        source = page.read_text()
        assert len(source.splitlines()) <= 200, page.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno + 1 <= 40, f"{page.name}:{node.name}"


def test_no_sys_path_manipulation_in_the_app():
    for f in APP_FILES:
        for node in ast.walk(ast.parse(f.read_text())):
            is_sys_path = (isinstance(node, ast.Attribute) and node.attr == "path"
                           and isinstance(node.value, ast.Name) and node.value.id == "sys")
            assert not is_sys_path, f"{f}:{node.lineno}"


def test_app_modules_stay_small():
    for f in APP_FILES:
        assert len(f.read_text().splitlines()) <= 600, f


def test_importing_xtask_app_has_no_side_effects():
    # A fresh interpreter: importing every module starts no thread and touches no session state.
    code = (
        "import threading, importlib, pkgutil, xtask_app, xtask_app.ui\n"
        "names = [m.name for m in pkgutil.walk_packages(xtask_app.__path__, 'xtask_app.')]\n"
        "[importlib.import_module(n) for n in names]\n"
        "import streamlit as st\n"
        "from streamlit.runtime import exists\n"
        "print(len(names), threading.active_count(), exists())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    n_modules, n_threads, runtime = out.stdout.split()
    assert int(n_modules) >= 8 and n_threads == "1" and runtime == "False"
