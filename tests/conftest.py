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

import torch  # noqa: E402  (after OMP_NUM_THREADS so it takes effect)

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def tiny_config():
    """Smallest sensible XTaskNet: ResNet18, 8-wide decoders, 4-wide TTNets, 64x64 input."""
    from xtask_core.config import ModelConfig
    return ModelConfig(enc_layers=18, num_classes=7, mid_features=8, ttnet_features=4,
                       height=64, width=64)


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
