"""xtask_core.io.paths and io.keys: allowed folders, checkpoint discovery, content keys."""
from __future__ import annotations

import os

import numpy as np
import pytest

from xtask_core.errors import XTaskError
from xtask_core.io import keys, paths


def test_allowed_roots_from_repo_and_env(tmp_path):
    extra1, extra2 = tmp_path / "a", tmp_path / "b"
    env = {"XTASK_ALLOWED_ROOTS": f"{extra1}{os.pathsep}{extra2}{os.pathsep}",
           "XTASK_CHECKPOINT_DIR": str(tmp_path / "ck")}
    roots = paths.allowed_roots(tmp_path / "repo", env)
    assert roots[:2] == [(tmp_path / "repo" / "checkpoints").resolve(), (tmp_path / "repo" / "runs").resolve()]
    assert extra1.resolve() in roots and extra2.resolve() in roots and (tmp_path / "ck").resolve() in roots
    assert len(roots) == len(set(roots))


def test_resolve_inside_accepts_relative_and_refuses_escapes(tmp_path):
    root = tmp_path / "runs"
    (root / "r1").mkdir(parents=True)
    (root / "r1" / "best.safetensors").write_bytes(b"x")
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    roots = [root.resolve()]
    expected = (root / "r1" / "best.safetensors").resolve()
    assert paths.resolve_inside("runs/r1/best.safetensors", roots, tmp_path) == expected
    with pytest.raises(XTaskError, match="outside the allowed folders"):
        paths.resolve_inside("runs/../secret.txt", roots, tmp_path)
    with pytest.raises(XTaskError, match="outside the allowed folders"):
        paths.resolve_inside(str(outside), roots, tmp_path)
    (root / "link").symlink_to(outside)  # a symlink inside a root must not leak a file outside it
    with pytest.raises(XTaskError, match="outside the allowed folders"):
        paths.resolve_inside("runs/link", roots, tmp_path)
    with pytest.raises(XTaskError, match="does not exist"):
        paths.resolve_inside("runs/nope.safetensors", roots, tmp_path)
    with pytest.raises(XTaskError, match="type a path"):
        paths.resolve_inside("  ", roots, tmp_path)


def test_find_checkpoints_shipped_and_runs(tmp_path):
    ck, runs = tmp_path / "ck", tmp_path / "runs"
    (ck / "demo_run").mkdir(parents=True)
    (ck / "b.safetensors").write_bytes(b"x")
    (ck / "a.pth").write_bytes(b"x")
    (ck / "notes.txt").write_text("x")
    (ck / "demo_run" / "best.safetensors").write_bytes(b"x")
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "best.safetensors").write_bytes(b"x")
    (runs / "empty").mkdir()
    found = paths.find_checkpoints(ck, runs)
    assert [c.label for c in found] == ["shipped: a", "shipped: b", "shipped: demo_run", "run: r1"]
    assert found[2].path == ck / "demo_run" / "best.safetensors"
    assert paths.find_checkpoints(tmp_path / "missing", None) == []


def test_content_keys_follow_content_shape_and_dtype():
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert keys.array_key(a) == keys.array_key(a.copy()) and len(keys.array_key(a)) == 40
    assert keys.array_key(a) != keys.array_key(a.reshape(3, 2))          # same bytes, other shape
    assert keys.array_key(a) != keys.array_key(a.astype(np.int8))        # same values, other dtype
    assert keys.array_key(np.asfortranarray(a)) == keys.array_key(a)     # memory layout does not matter
    assert keys.sha1_hex(b"abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"
