"""Shared fixtures: tiny models and data so the whole suite runs on 2 CPU cores."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("XTASK_TEST", "1")
# Tiny models gain nothing from intra-op threads, and several tests start subprocesses
# (trainer, DDP ranks, the streamlit server): one thread each avoids oversubscribing 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XTASK_NO_TQDM", "1")
# Path decisions and records the tests make stay out of the user's ~/.cache/xtask (a test that
# checks the cache itself points XTASK_CACHE_DIR at its own tmp_path).
if "XTASK_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["XTASK_CACHE_DIR"] = tempfile.mkdtemp(prefix="xtask-test-cache-")

import torch  # noqa: E402  (after OMP_NUM_THREADS so it takes effect)

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def tiny_config():
    """Smallest sensible XTaskNet: ResNet18, 8-wide decoders, 4-wide TTNets, 64x64 input."""
    from tests.tiny import tiny_model_config
    return tiny_model_config()


@pytest.fixture
def tiny_model(tiny_config):
    import torch

    from xtask_core.model import XTaskNet
    torch.manual_seed(0)
    return XTaskNet(tiny_config).eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a whole test module, restored afterwards. On 2 shared cores,
    OpenMP threads spinning against each other make tiny training steps ~5x slower than one
    thread. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- the fast set
# `make test-fast` runs `-m "not slow and not browser"` and must stay under 2 minutes on 2 CPU
# cores. Marked slow here, by measurement (pytest --durations on this machine):
# whole modules whose tests start subprocesses (CLI, trainer, jobs, torchrun), train, or drive
# the heavier pages through AppTest ...
SLOW_MODULES = frozenset({
    "test_reliability.py", "test_cli.py", "test_train.py", "test_stl_train.py", "test_jobs.py",
    "test_records.py", "test_stale_tmp.py", "test_bench.py", "test_app_package.py",
    "test_app_compare.py", "test_app_dashboard.py", "test_app_error_maps.py", "test_app_finetune.py",
    "test_app_learn.py", "test_app_predictions.py", "test_dataset_page.py",
})
# ... and single tests of otherwise fast modules that take seconds each (fast-path builds and
# tracing, full checkpoint round trips, the deepest encoders, extra Home-page sessions; Home's
# first AppTest stays fast). A name without "[...]" marks every parametrisation of that test.
SLOW_TESTS = frozenset({
    "test_app_home.py::test_checkpoint_choice_lives_in_the_address",
    "test_app_home.py::test_failed_load_keeps_previous_model",
    "test_app_home.py::test_page_runs_from_a_relative_path",
    "test_app_home.py::test_select_checkpoint_switches_adds_and_refuses",
    "test_autotune.py::test_forced_path_by_argument_and_environment",
    "test_autotune.py::test_predictor_uses_the_cache_and_remeasures_a_changed_key",
    "test_checkpoint.py::test_train_state_roundtrip",
    "test_evaluation.py::test_fast_agrees_with_exact",
    "test_inference.py::test_cpu_fast_path_fuses_convs_and_keeps_the_reference_answers",
    "test_inference.py::test_fast_fp32_with_ttnet_bn_matches",
    "test_inference.py::test_fast_path_agrees_with_fp32[traced]",
    "test_inference.py::test_forward_direct_only",
    "test_inference.py::test_fusion_failure_falls_back_to_an_unfused_copy_with_the_same_answers",
    "test_inference.py::test_predict_batch_matches_single",
    "test_inference.py::test_predict_custom_size_and_bad_inputs",
    "test_inference.py::test_predict_odd_sizes",
    "test_inference.py::test_concurrent_predictions_are_consistent",
    "test_inference.py::test_fast_path_agrees_with_fp32[bf16_traced]",
    "test_model.py::test_every_encoder_forward_backward[101]",
    "test_model.py::test_every_encoder_forward_backward[152]",
    "test_stl_checkpoint.py::test_cli_predict_writes_only_the_files_of_the_task_it_has",
    "test_inference.py::test_predictor_does_not_mutate_model",
    "test_stl_checkpoint.py::test_predictor_fills_only_the_task_the_net_has",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = f"{item.path.name}::{item.nodeid.split('::', 1)[-1]}"
        if item.path.name in SLOW_MODULES or name in SLOW_TESTS or name.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
