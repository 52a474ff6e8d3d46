"""The architecture registry (models.ARCHITECTURES): published sizes, the width knob, foreign key names."""

from __future__ import annotations

import pytest
import torch

from trades_instability.config import run as config
from trades_instability.core.models import ARCH_NAMES, ARCHITECTURES, adapt_foreign_state_dict, build_model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Exact counts of our definitions at the published size (width 64) with 10 classes. The published figures
# they must round to: WideResNet-34-10 46.16M / 46.2M and PreActResNet-18 11.17M / 11.2M (issue 20, the
# counts quoted for the TRADES / AWP models); CIFAR ResNet-18 11.17M (11,173,962 is the well-known count of
# kuangliu/pytorch-cifar's ResNet18, the layout of ADR's src/model/resnet.py).
PUBLISHED = {"wrn-34-10": (46_160_474, 46.16), "preact-resnet18": (11_172_170, 11.17), "resnet18": (11_173_962, 11.17)}


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_parameter_count_is_the_published_one(arch):
    exact, millions = PUBLISHED[arch]
    n = n_params(build_model(arch, num_classes=10))
    assert n == exact
    assert round(n / 1e6, 2) == millions


def test_registry_is_one_table_with_sources_and_config_agrees():
    assert ARCH_NAMES == config.ARCHS == ("resnet18", "preact-resnet18", "wrn-34-10")
    assert "TRADES models/wideresnet.py" in ARCHITECTURES["wrn-34-10"].source
    assert "fast_adversarial" in ARCHITECTURES["preact-resnet18"].source
    cfg = config.from_dict({"arch": "wrn-34-10", "dataset": "synthetic"})
    assert cfg.arch == "wrn-34-10"
    with pytest.raises(config.ConfigError, match="'arch' must be one of resnet18, preact-resnet18, wrn-34-10"):
        config.from_dict({"arch": "wrn-28-10"})


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_width_shrinks_every_architecture_and_inputs_stay_in_pixel_space(arch):
    torch.manual_seed(0)
    small = build_model(arch, num_classes=4, width=4)
    assert n_params(small) < n_params(build_model(arch, num_classes=4)) / 50
    x = torch.rand(3, 3, 16, 16)
    assert small.eval()(x).shape == (3, 4)  # adaptive pooling: 16x16 works as 32x32 does
    # normalisation inside the model: (x - mean) / std on the way in, not part of the state dict
    normed = build_model(arch, num_classes=4, width=4, normalize=([0.5] * 3, [0.25] * 3))
    normed.load_state_dict(small.state_dict())
    assert set(normed.state_dict()) == set(small.state_dict())
    torch.testing.assert_close(normed.eval()(x), small((x - 0.5) / 0.25))


def test_wrn_keeps_its_depth_at_small_width():
    wrn = build_model("wrn-34-10", num_classes=10, width=4)
    convs = [m for m in wrn.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 15 * 2  # stem + 15 blocks of two 3x3 convs: 34 layers with the 3 shortcuts and fc
    assert wrn.block1.layer[0].conv1.out_channels == 10  # 160 x 4/64


def test_foreign_state_dict_names_are_adapted():
    wrn = build_model("wrn-34-10", num_classes=10, width=4)
    state = {f"module.{k}": v for k, v in wrn.state_dict().items()}
    state["module.sub_block1.layer.0.conv1.weight"] = torch.zeros(1)  # TRADES' unused block
    adapted = adapt_foreign_state_dict(state)
    assert set(adapted) == set(wrn.state_dict())
    build_model("wrn-34-10", num_classes=10, width=4).load_state_dict(adapted)  # strict: every key fits
