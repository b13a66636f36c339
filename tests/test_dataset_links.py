"""Where a records row's image lives and the address that opens it in the other pages
(xtask_app.ui.dataset_links, pure: no app needed)."""
from __future__ import annotations

from xtask_app.ui.dataset_links import open_params, sample_name, source_text


def test_open_params():
    src = {"kind": "dataset", "dataset": "synthetic", "split": "val", "root": "/data/s", "input_size": [64, 64]}
    img = "leftImg8bit/val/city/a_000001_000019_leftImg8bit.png"
    assert sample_name(img) == "val/city/a_000001_000019" and sample_name("x.png") is None
    p = open_params(src, img, 3, ["A", "B"], samples_root="/data/s")
    assert p == {"ckpt": "A", "ckpts": ["A", "B"], "src": "sample", "image": "val/city/a_000001_000019"}
    p = open_params(src, img, 3, ["A"], samples_root="/elsewhere")
    assert p == {"ckpt": "A", "ckpts": ["A"], "src": "dataset", "ds": "synthetic", "root": "/data/s", "split": "val",
                 "idx": "3"}
    assert source_text(src) == "synthetic val split (/data/s), input 64×64"


def test_open_params_of_a_folder_is_a_file_link():
    folder = {"kind": "folder", "dataset": None, "split": None, "root": "/p/photos", "input_size": [64, 64]}
    assert open_params(folder, "x.png", 0, ["A", "B"]) == {"ckpt": "A", "ckpts": ["A", "B"], "src": "file",
                                                            "path": "/p/photos/x.png"}
    # the record's image is relative to the folder, nested folders included; the samples root plays no part
    assert open_params(folder, "trip/day 2/y.jpg", 5, [], samples_root="/p/photos") == {
        "src": "file", "path": "/p/photos/trip/day 2/y.jpg"}
    assert open_params({"kind": "folder", "root": None}, "x.png", 0, ["A"]) is None
    assert open_params({"kind": "zip", "root": "/p"}, "x.png", 0, ["A"]) is None
