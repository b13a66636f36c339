"""The loss-reduction mode on the command line: default, flag, and runs saved before the option."""
from __future__ import annotations

import pytest

from xtask_core import cli
from xtask_core.checkpoint import save_train_state
from xtask_core.config import TrainConfig
from xtask_core.errors import XTaskError


def _cfg(argv):
    return cli.train_config_from_args(cli.build_parser().parse_args(["train", *argv]))


def test_default_is_the_original_arithmetic_and_masked_is_selectable():
    assert _cfg([]).loss_reduction == "original"
    assert _cfg(["--dataset", "nyuv2"]).loss_reduction == "original"
    assert _cfg(["--loss_reduction", "masked"]).loss_reduction == "masked"
    # an unknown mode is refused while parsing, before any work, naming the choices
    with pytest.raises(cli.UsageError, match="invalid choice: 'mean' .*'original', 'masked'"):
        cli.build_parser().parse_args(["train", "--loss_reduction", "mean"])


def _old_run(tmp_path, tiny_model, with_field: str | None):
    run = tmp_path / "run"
    run.mkdir()
    tc = TrainConfig(out=str(run), enc_layers=18, mid_features=8, ttnet_features=4, height=64,
                     width=64).to_dict()
    if with_field is None:
        tc.pop("loss_reduction")  # as saved before the option existed
    else:
        tc["loss_reduction"] = with_field
    save_train_state(run / "last.state.pt", model=tiny_model, train_config=tc, epoch=1, step=2)
    return run


def test_resuming_a_run_saved_before_the_option_keeps_its_masked_means(tmp_path, tiny_model):
    run = _old_run(tmp_path, tiny_model, None)
    assert _cfg(["--out", str(run), "--resume"]).loss_reduction == "masked"
    # an explicit flag still wins, as for every other resumable option
    assert _cfg(["--out", str(run), "--resume", "--loss_reduction", "original"]).loss_reduction == "original"


def test_resuming_keeps_the_saved_mode(tmp_path, tiny_model):
    run = _old_run(tmp_path, tiny_model, "original")
    assert _cfg(["--out", str(run), "--resume"]).loss_reduction == "original"


def test_bad_mode_in_a_config_is_one_line():
    with pytest.raises(XTaskError, match="loss_reduction must be one of original, masked"):
        TrainConfig.from_dict({"loss_reduction": "sum"})
