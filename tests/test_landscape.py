"""Loss landscape (Figure 1): grid, axes, (0, 0) = clean loss, batched = pointwise, .npz layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trades_instability.core import models
from trades_instability.core.landscape import LandscapeConfig, compute_landscape
from trades_instability.rundir.records import save_landscape


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    model = models.build_model("resnet18", num_classes=10, width=4).eval()
    x = torch.rand(3, 3, 16, 16)
    y = torch.tensor([1, 4, 7])
    return model, x, y


def test_grid_shape_axes_and_origin_is_clean_loss(model_and_data, tmp_path):
    model, x, y = model_and_data
    cfg = LandscapeConfig(grid_size=7, extent=0.05, n_images=3, seed=1, batch_size=10)  # batches cut across images
    res = compute_landscape(model, x, y, cfg)
    assert res["loss"].shape == (7, 7) and res["loss_per_image"].shape == (3, 7, 7)
    np.testing.assert_allclose(res["a"], np.linspace(-0.05, 0.05, 7))
    np.testing.assert_allclose(res["b"], np.linspace(-0.05, 0.05, 7))
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
    np.testing.assert_allclose(res["loss_per_image"][:, 3, 3], clean.numpy(), rtol=1e-5, atol=1e-6)
    assert res["loss"][3, 3] == pytest.approx(float(clean.mean()), rel=1e-5)

    # one grid point recomputed by hand: r1 = sign of the input gradient, r2 = the seeded Rademacher draw
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    r2 = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.int8).float() * 2 - 1
    assert set(r2.unique().tolist()) == {-1.0, 1.0}
    a, b = res["a"][0], res["b"][5]
    with torch.no_grad():
        manual = F.cross_entropy(model(x + float(a) * g.sign() + float(b) * r2), y, reduction="none")
    np.testing.assert_allclose(res["loss_per_image"][:, 0, 5], manual.numpy(), rtol=1e-4, atol=1e-5)

    out = tmp_path / "sub" / "landscape.npz"
    save_landscape(out, res, cfg)
    z = np.load(out)
    assert z["loss"].shape == (7, 7) and z["a"].shape == (7,) and z["b"].shape == (7,)
    assert int(z["n_images"]) == 3 and int(z["seed"]) == 1
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_clamp_keeps_images_valid(model_and_data):
    model, x, y = model_and_data
    free = compute_landscape(model, x, y, LandscapeConfig(grid_size=3, extent=0.5, n_images=3))
    clamped = compute_landscape(model, x, y, LandscapeConfig(grid_size=3, extent=0.5, n_images=3, clamp=True))
    assert free["loss"][1, 1] == pytest.approx(clamped["loss"][1, 1])  # the origin is a valid image either way
    assert not np.allclose(free["loss"], clamped["loss"])  # far corners leave [0, 1] unless clamped
