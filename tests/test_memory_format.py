"""channels_last only where the backend runs it: oneDNN's weight gradient of a strided 1x1 convolution with
2-7 input channels in NHWC kills the process (torch 2.14.1 CPU), so such models run NCHW on CPU."""

import subprocess
import sys
import textwrap

import pytest
from torch import nn

from trades_instability.core.memory_format import onednn_unsafe_layers, use_channels_last
from trades_instability.core.models import build_model


@pytest.mark.parametrize("width,unsafe", [(2, True), (4, True), (7, True), (8, False), (16, False), (64, False)])
def test_resnet_shortcuts_decide_the_format_on_cpu(width, unsafe):
    model = build_model(num_classes=3, width=width)
    # layer2's shortcut (1x1, stride 2) takes `width` input channels; layer3/4's take 2x and 4x
    assert bool(onednn_unsafe_layers(model)) == unsafe
    assert use_channels_last(model, "cpu") == (not unsafe)
    assert use_channels_last(model, "cuda")  # cuDNN has no such bug: NHWC on every GPU
    assert not use_channels_last(model, "cuda", requested=False)


def test_only_strided_1x1_convs_with_2_to_7_channels_count():
    layers = nn.Sequential(
        nn.Conv2d(4, 8, 3, stride=2, padding=1),  # 3x3: fine
        nn.Conv2d(4, 8, 1, stride=1),  # stride 1: fine
        nn.Conv2d(1, 8, 1, stride=2),  # one channel: fine
        nn.Conv2d(8, 8, 1, stride=2),  # 8 channels: fine
        nn.Conv2d(5, 8, 1, stride=2),  # crashes
    )
    assert onednn_unsafe_layers(layers) == ["4"]


_TRAIN_STEP = textwrap.dedent("""
    import torch
    from trades_instability.config.run import from_dict
    from trades_instability.train.loop import Trainer
    cfg = from_dict({"dataset": "synthetic", "width": %d, "epochs": 1, "batch_size": 16, "val_batch_size": 16,
                     "synthetic": {"num_classes": 4, "train_size": 32, "test_size": 16, "image_size": 16, "seed": 0},
                     "attack": {"steps": 2}, "device": "cpu", "channels_last": True})
    t = Trainer(cfg, out_dir=%r)
    t.run()
    print("channels_last", t.channels_last)
""")


@pytest.mark.parametrize("width", [2, 8])
def test_cpu_training_with_channels_last_requested_does_not_crash(tmp_path, width):
    """In a child process, so a backend crash fails this test instead of killing the test session."""
    proc = subprocess.run([sys.executable, "-c", _TRAIN_STEP % (width, str(tmp_path / "run"))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"rc {proc.returncode}: {proc.stderr[-2000:]}"
    assert f"channels_last {width >= 8}" in proc.stdout


def test_compile_keeps_inductor_off_nhwc_where_onednn_crashes():
    from trades_instability.core.memory_format import compile_options

    assert compile_options(build_model(num_classes=3, width=2), "cpu") == {"layout_optimization": False}
    assert compile_options(build_model(num_classes=3, width=8), "cpu") is None
    assert compile_options(build_model(num_classes=3, width=2), "cuda") is None
