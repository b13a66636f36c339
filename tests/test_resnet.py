"""Our ResNet (xtask_core/model/resnet.py) against torchvision's: same keys, same random
initialisation from the same seed, same outputs; and no product module imports torchvision."""
import subprocess
import sys

import pytest
import torch

from xtask_core.model.resnet import resnet

torchvision = pytest.importorskip("torchvision")


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_same_layout_init_and_outputs_as_torchvision(depth):
    torch.manual_seed(depth)
    ours = resnet(depth).eval()
    torch.manual_seed(depth)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k     # same draws in the same order
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.train()
    theirs.train()
    ours(x).sum().backward()
    theirs(x).sum().backward()
    torch.testing.assert_close(ours.conv1.weight.grad, theirs.conv1.weight.grad, rtol=1e-4, atol=1e-4)


def test_product_does_not_import_torchvision_nor_dynamo(tmp_path):
    """Either import costs over a second of CPU in every process (the app's first page, each
    fine-tune job): building a model to load a checkpoint into must not pull them in."""
    from tests.tiny import tiny_model_config
    from xtask_core.checkpoint import save_checkpoint
    from xtask_core.model import XTaskNet

    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, XTaskNet(tiny_model_config()))
    code = ("import sys, xtask_core.checkpoint as c, xtask_core.inference.predictor, xtask_core.train.trainer, "
            f"xtask_app.cache; c.load_checkpoint({str(path)!r}); "
            "print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
