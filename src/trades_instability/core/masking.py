"""Planted gradient masking: a positive control for the evaluation and its detectors (README "Planted control").

A planted run is trained, validated, fixed and evaluated exactly like any other run, through one model
wrapper (:class:`PlantedModel`): the run's input goes through a masking transform before the network. The
masking is therefore known to be there, and the pipeline's Unstable rule (PGD-10 - Square >= 0.08) and the
FOSC / SGCS detectors can be checked against it. The kinds (:data:`KINDS`, one row each) follow the
taxonomy of Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018:

* ``quantize`` (Sec. 4.1, shattered gradients: thermometer encoding / input quantisation):
  ``x -> round(x (K - 1)) / (K - 1)`` with K = ``levels``. Its derivative is zero almost everywhere, so the
  input gradient of every loss is exactly zero: PGD, APGD and FAB never leave their start while Square, a
  black-box attack, crosses the quantisation steps. FOSC = eps ||0||_1 - <delta, 0> = 0 and SGCS = 0:
  a FOSC detector reads "no masking" on it, the blind spot this control puts on record.
* ``stochastic`` (Sec. 4.2, stochastic gradients: randomised input transformations, e.g. Xie et al. 2018's
  random resizing and padding): every forward translates each image by a random offset of up to ``shift``
  pixels (zero padding) and adds N(0, ``noise_std``) noise. Every gradient is taken through another draw,
  so PGD's steps disagree (SGCS falls) and its end point is no stationary point of the loss the next draw
  sees (FOSC rises): the kind a FOSC detector does see, used for the planted self-healing window.

``epochs: [a, b]`` switches the masking on for training epochs a..b only (validation of those epochs
included). Evaluation comes after training, so every checkpoint of a run is evaluated with the masking as
it stands after the run's last epoch (:func:`for_checkpoint`): always on without a window, off after a window
that ends before the last epoch (the planted self-healing run: masked in the middle of training, a plain
network at the end). The network's weights and state dict are
never touched: a planted checkpoint holds the same tensors as any other, and its ``model_meta`` says
how it was planted (:func:`meta`). One forward is not wrapped: the proxy model of ``awp.form: official``
(core/awp.py, a copy of the network) computes its weight perturbation on unmasked inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.config.run import PLANT_KINDS, PlantMaskingConfig

SOURCE = "Athalye, Carlini & Wagner, ICML 2018"


class InputQuantizer(nn.Module):
    """``round(x (K - 1)) / (K - 1)`` on inputs in [0, 1]: K grey levels per channel, zero gradient."""

    def __init__(self, levels: int):
        super().__init__()
        if levels < 2:
            raise ValueError(f"quantisation needs at least 2 levels, got {levels}")
        self.levels = int(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.levels - 1
        return torch.round(x.clamp(0.0, 1.0) * k) / k


class RandomTranslateNoise(nn.Module):
    """Each image shifted by a random (dy, dx) in [-shift, shift]^2 (zero padding), plus N(0, noise_std)
    noise; a new draw at every forward, in training and in evaluation alike (a randomised defence is random
    at test time). Draws come from a CPU generator (the same numbers on every device), reseeded by
    :meth:`reseed` so that a resumed run and a re-evaluation draw the same numbers."""

    def __init__(self, shift: int, noise_std: float, seed: int = 0):
        super().__init__()
        self.shift, self.noise_std = int(shift), float(noise_std)
        self.generator = torch.Generator()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        s = self.shift
        if s > 0:
            off = torch.randint(0, 2 * s + 1, (b, 2), generator=self.generator).to(x.device)
            padded = F.pad(x, (s, s, s, s))
            rows = torch.arange(h, device=x.device)[None, :] + off[:, :1]  # (b, h) rows of the padded image
            cols = torch.arange(w, device=x.device)[None, :] + off[:, 1:]  # (b, w)
            bi = torch.arange(b, device=x.device)[:, None, None, None]
            ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            # a selection of pixels: differentiable, gradients are moved, not zeroed. The result keeps the input's
            # memory format: channels_last reaches the network only where the trainer chose it (core/memory_format.py:
            # oneDNN aborts on some tiny-width channels_last convolutions on CPU)
            channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
            x = padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        if self.noise_std > 0:
            x = x + self.noise_std * torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
        return x


@dataclass(frozen=True)
class Kind:
    """One kind of planted masking: where it comes from, the run-config keys it reads, its transform, and
    what the gradient-masking detectors read on it (README, detection report)."""

    name: str
    source: str
    params: tuple[str, ...]  # keys of PlantMaskingConfig it reads (besides kind and epochs)
    build: Callable[[PlantMaskingConfig, int], nn.Module]
    detectors: str

    def describe(self, cfg: PlantMaskingConfig | Mapping[str, Any]) -> str:
        """``quantize (levels 8)``, ``stochastic (shift 2, noise_std 0.05) in epochs 1-1``."""
        get = cfg.get if isinstance(cfg, Mapping) else lambda k, d=None: getattr(cfg, k, d)
        params = ", ".join(f"{p} {get(p):g}" for p in self.params)
        window = get("epochs") or []
        return f"{self.name} ({params})" + (f" in epochs {window[0]}-{window[1]}" if window else "")


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("quantize", f"{SOURCE}, Sec. 4.1 (shattered gradients: input quantisation / thermometer encoding)",
         ("levels",), lambda c, seed: InputQuantizer(c.levels),
         "zero input gradient: gradient attacks stall (PGD-10 ~ clean), Square does not; FOSC = 0 and SGCS = 0 "
         "(a FOSC detector is blind to it)"),
    Kind("stochastic", f"{SOURCE}, Sec. 4.2 (stochastic gradients: randomised input transformations, "
         "Xie et al. 2018)", ("shift", "noise_std"), lambda c, seed: RandomTranslateNoise(c.shift, c.noise_std, seed),
         "every gradient through another random draw: PGD's steps disagree (SGCS falls), FOSC rises"),
)}
# config/run.py repeats the kinds and their keys so that validating a config does not import torch
if {k: v.params for k, v in KINDS.items()} != dict(PLANT_KINDS):
    raise RuntimeError("core/masking.py KINDS and config/run.py PLANT_KINDS disagree")


def is_planted(cfg: PlantMaskingConfig | Mapping[str, Any] | None) -> bool:
    if cfg is None:
        return False
    kind = cfg.get("kind") if isinstance(cfg, Mapping) else cfg.kind
    return kind in KINDS


def _config(cfg: PlantMaskingConfig | Mapping[str, Any]) -> PlantMaskingConfig:
    """A PlantMaskingConfig from itself or a mapping (a checkpoint's record: extra keys such as source dropped)."""
    if isinstance(cfg, PlantMaskingConfig):
        return cfg
    return PlantMaskingConfig(**{k: v for k, v in cfg.items() if k in PlantMaskingConfig.__dataclass_fields__})


def active_at(cfg: PlantMaskingConfig | Mapping[str, Any] | None, epoch: int | None) -> bool:
    """Whether the masking is on in (1-based) training epoch ``epoch`` (every epoch without a window)."""
    if not is_planted(cfg):
        return False
    window = _config(cfg).epochs
    return not window or (epoch is not None and window[0] <= epoch <= window[1])


class PlantedModel(nn.Module):
    """``model(transform(x))`` while the masking is on, ``model(x)`` while it is off. Only the forward
    is wrapped: trainer, fix, attacks and metrics run on it unchanged; the network's state dict is the
    wrapped ``model``'s (save that one)."""

    def __init__(self, model: nn.Module, cfg: PlantMaskingConfig, seed: int):
        super().__init__()
        self.model = model
        self.plant = cfg
        self.seed = int(seed)
        self.transform = KINDS[cfg.kind].build(cfg, self.seed)
        self.active = not cfg.epochs

    def set_epoch(self, epoch: int) -> None:
        """Switch the masking for training epoch ``epoch`` (and its validation); a random transform
        restarts from a seed of (run seed, epoch), so a run resumed at an epoch boundary draws the same."""
        self.active = active_at(self.plant, epoch)
        if hasattr(self.transform, "reseed"):
            self.transform.reseed(self.seed * 1_000_003 + int(epoch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x) if self.active else x)


def plant(model: nn.Module, cfg: PlantMaskingConfig, seed: int) -> nn.Module:
    """``model`` behind the run's planted masking; ``model`` itself when the run is not planted."""
    return PlantedModel(model, cfg, seed) if is_planted(cfg) else model


def set_epoch(model: nn.Module, epoch: int) -> None:
    """Tell a planted model which training epoch runs (no-op for any other model)."""
    if isinstance(model, PlantedModel):
        model.set_epoch(epoch)


def meta(cfg: PlantMaskingConfig) -> dict[str, Any] | None:
    """What a checkpoint's ``model_meta`` records of the planting (None: not planted)."""
    if not is_planted(cfg):
        return None
    kind = KINDS[cfg.kind]
    return {"kind": cfg.kind, **{p: getattr(cfg, p) for p in kind.params}, "epochs": list(cfg.epochs),
            "source": kind.source}


def for_checkpoint(model: nn.Module, planted: Mapping[str, Any] | None, final_epoch: int,
                   seed: int = 0) -> nn.Module:
    """A checkpoint's model as the finished run stands: behind the recorded masking if it is on after the
    run's last epoch ``final_epoch``; the plain ``model`` when not planted."""
    if not planted:
        return model
    wrapped = PlantedModel(model, _config(planted), seed)
    wrapped.set_epoch(int(final_epoch))
    return wrapped


def report(planted: Mapping[str, Any] | None, final_epoch: int) -> dict[str, Any] | None:
    """The ``planted`` entry of an evaluation JSON: how the checkpoint was planted, whether its evaluation
    ran behind the masking, and what the detectors read on that kind (None: not planted)."""
    if not planted:
        return None
    kind = KINDS[planted["kind"]]
    return {**dict(planted), "active": active_at(planted, final_epoch), "description": kind.describe(planted),
            "detectors": kind.detectors,
            "note": "planted gradient masking: a positive control (README 'Planted control'), not a finding"}
