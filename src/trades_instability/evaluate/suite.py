"""Evaluation of a trained checkpoint: clean, PGD-10 (+ FOSC, SGCS), Square, AutoAttack; classification.

Suites (:func:`builtin_suites`, from the table :data:`trades_instability.config.suites.BUILTIN_SUITES`:
cheap, aa, full, landscape; overridable by a YAML file of the same shape, :func:`load_suites`).

Conventions (they matter for comparing runs):

* The evaluated examples are the FIRST ``n_examples`` of the test set (null = all), so every run of
  a study sees the same images.
* Reported attacks run in fp32 with TF32 off and the model in eval mode (:func:`fp32_precision`).
* PGD-10: cross-entropy, eps 8/255, step 2/255, uniform random start drawn from a generator seeded
  with the suite ``seed`` (batch by batch, so the draw depends on ``batch_size``). FOSC and SGCS are
  computed from the SAME PGD-10 examples: the gradient of each example's own CE loss at the final
  x^k gives FOSC and, from the same forward pass, the PGD-10 prediction; SGCS uses the 10 recorded
  step gradients (at x^0 .. x^9). Both are means over the evaluated examples.
* AutoAttack is ``pyautoattack`` (see :mod:`trades_instability.evaluate.autoattack`). The standard
  version runs APGD-CE, the *targeted* APGD on the DLR loss (``apgd-t``) and the *targeted* FAB
  (``fab-t``), and Square, with the standard budget (``autoattack.STANDARD_SETTINGS``); the paper's
  Table 1 calls their columns APGD-CE, APGD-DLR, FAB and Square (:data:`PAPER_COLUMNS`, the one place the
  names are mapped).
* ``autoattack_acc`` is the standard AutoAttack ensemble's own accuracy, exactly as pyautoattack's
  ``run_standard_evaluation`` reports it, whatever else the suite runs: one definition in every suite,
  row and Gap. ``worst_case_acc`` counts an example as robust only if every attack the suite ran
  (PGD-10, Square, the ensemble, each component run alone) failed on it; it is never called AutoAttack.
* Unstable (Tables 2, 4): ``pgd10_acc - square_acc >= unstable_threshold`` (0.08), null without Square.
* pyautoattack's own reliability checks are recorded by name (``autoattack_flags``; autoattack_eval.collect_flags).
* A model with non-finite logits gives ``status: "diverged"`` and null numbers instead of a crash.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.config.run import ConfigError, _from_dict, read_yaml_mapping
from trades_instability.config.suites import (
    ATTACK_NAMES,
    BUILTIN_SUITES,
    builtin_spec,
    fraction,
    new_suite_problem,
    values_problem,
)
from trades_instability.core import attacks, metrics
from trades_instability.core.landscape import LandscapeConfig, compute_landscape
from trades_instability.core.verdict import DEFAULT_UNSTABLE_THRESHOLD, is_unstable
from trades_instability.data.datasets import to_float
from trades_instability.evaluate import autoattack as autoattack_eval
from trades_instability.rundir.atomic_io import write_json
from trades_instability.rundir.records import save_landscape
from trades_instability.runtime import cudnn_benchmark_off, device_description, library_versions, resolve_device

# AutoAttack attack name -> column name in the paper's Table 1. The standard version's DLR and FAB
# attacks are the targeted variants (apgd-t, fab-t); the paper's columns "APGD-DLR" and "FAB" hold them.
PAPER_COLUMNS: dict[str, str] = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-DLR", "fab-t": "FAB", "square": "Square"}
# AutoAttack attack name -> JSON key of its accuracy when run on its own
ATTACK_KEYS: dict[str, str] = {"apgd-ce": "apgd_ce_acc", "apgd-t": "apgd_t_acc", "fab-t": "fab_t_acc",
                               "square": "square_acc"}

NUMBER_KEYS: tuple[str, ...] = (
    "clean_acc", "pgd10_acc", "square_acc", "autoattack_acc", "apgd_ce_acc", "apgd_t_acc", "fab_t_acc",
    "fosc", "sgcs", "gradalign", "gap_pgd_square", "gap_pgd_aa", "worst_case_acc",
)


class SuiteError(ValueError):
    """A suite is unknown or badly specified; the message names the suite and key."""


@dataclass
class SuiteConfig:
    """One evaluation suite. Defaults follow the paper (full test set, standard AutoAttack)."""

    attacks: list[str] = field(default_factory=lambda: ["clean", "pgd10"])
    n_examples: int | None = None  # first n test examples; None = the whole test set
    batch_size: int = 500  # clean / PGD-10 batches (PGD's random start is drawn batch by batch)
    # AutoAttack batch. The accuracy depends on it: pyautoattack reseeds every attack at every batch, so the
    # random starts (and Square's draws) of an example depend on which batch it falls in. A number pins it
    # (500: the batch of pyautoattack's own examples/eval.py); out-of-memory then stops the evaluation with
    # AABatchOutOfMemory instead of changing the numbers. null = the largest that fits (on a GPU: start at
    # AA_AUTO_START and halve on out-of-memory, logged; on the CPU: batch_size); the eval JSON records the batch.
    aa_batch_size: int | None = 500
    seed: int = 0  # attack seed: PGD random start and every AutoAttack component
    eps: float = 8 / 255
    pgd_steps: int = 10
    pgd_step_size: float = 2 / 255
    # AutoAttack budget (Square's queries also serve Square alone); any value other than the standard one
    # (autoattack.STANDARD_SETTINGS) makes the run version='custom'
    square_queries: int = autoattack_eval.STANDARD_SETTINGS["square_queries"]
    apgd_iters: int = autoattack_eval.STANDARD_SETTINGS["apgd_iters"]
    fab_iters: int = autoattack_eval.STANDARD_SETTINGS["fab_iters"]
    n_target_classes: int = autoattack_eval.STANDARD_SETTINGS["n_target_classes"]
    unstable_threshold: float = DEFAULT_UNSTABLE_THRESHOLD
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def aa_settings(self) -> autoattack_eval.AASettings:
        return autoattack_eval.AASettings(
            eps=self.eps, seed=self.seed, apgd_iters=self.apgd_iters, fab_iters=self.fab_iters,
            n_target_classes=self.n_target_classes, square_queries=self.square_queries,
        )


def builtin_suites() -> dict[str, SuiteConfig]:
    return {name: SuiteConfig(**builtin_spec(name)) for name in BUILTIN_SUITES}


def _validate_suite(name: str, s: SuiteConfig) -> SuiteConfig:
    """The one check of a suite's values (config/suites.py), also made by the pipeline config."""
    problem = values_problem(s.to_dict())
    if problem:
        raise SuiteError(f"suite '{name}': key '{problem[0]}' {problem[1]}")
    return s


def suite_from_dict(name: str, data: dict[str, Any], base: SuiteConfig | None = None) -> SuiteConfig:
    """Build a suite from a mapping; keys missing from ``data`` keep ``base`` (or the defaults)."""
    if not isinstance(data, dict):
        raise SuiteError(f"suite '{name}' must be a mapping of keys, got {data!r}")
    merged = (base or SuiteConfig()).to_dict()
    for k, v in data.items():
        if k == "landscape" and isinstance(v, dict):
            merged["landscape"] = {**merged["landscape"], **v}
        else:
            merged[k] = v
    for key in ("eps", "pgd_step_size"):  # allow "8/255" in YAML
        if isinstance(merged[key], str):
            value = fraction(merged[key])
            if value is None:
                raise SuiteError(f"suite '{name}': key '{key}' must be a number or 'a/b', got {merged[key]!r}")
            merged[key] = value
    try:
        suite = _from_dict(SuiteConfig, merged)
    except ConfigError as e:
        raise SuiteError(f"suite '{name}': {e}") from None
    return _validate_suite(name, suite)


def load_suites(path: str | Path | None = None) -> dict[str, SuiteConfig]:
    """Builtin suites, overridden/extended by the YAML file ``path`` ({suite: {key: value}}).

    A suite named like a builtin starts from the builtin; a new name starts from the defaults and
    must list its ``attacks``."""
    suites = builtin_suites()
    if path is None:
        return suites
    data = read_yaml_mapping(path, "suites file", SuiteError)
    for name, spec in data.items():
        problem = new_suite_problem(str(name), spec if isinstance(spec, dict) else None)
        if problem:
            raise SuiteError(f"{path}: suite '{name}': key '{problem[0]}': {problem[1]}")
        try:
            suites[str(name)] = suite_from_dict(str(name), spec, base=suites.get(name))
        except SuiteError as e:
            raise SuiteError(f"{path}: {e}") from None
    return suites


def get_suite(suites: dict[str, SuiteConfig], name: str) -> SuiteConfig:
    if name not in suites:
        raise SuiteError(f"unknown suite '{name}'; available: {', '.join(sorted(suites))}")
    return suites[name]


# ----------------------------------------------------------------------------- precision / helpers


@contextlib.contextmanager
def fp32_precision():
    """fp32 matmuls and convolutions (TF32 off) for reported numbers; restores the previous flags."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[0], old[1]
        torch.set_float32_matmul_precision(old[2])


# Unstable instance (paper, Tables 2/4): PGD-10 accuracy exceeds Square accuracy by >= threshold
classify = is_unstable


class NonFiniteLogits(RuntimeError):
    """The model produced NaN/inf logits (a diverged checkpoint)."""


def _check_finite(logits: torch.Tensor, where: str) -> None:
    if not torch.isfinite(logits).all():
        raise NonFiniteLogits(f"non-finite logits during {where}")


def _acc(flags: torch.Tensor) -> float:
    return float(flags.float().mean())


# ------------------------------------------------------------------------------------------ attacks


@torch.no_grad()
def clean_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = []
    for s in range(0, x.shape[0], batch_size):
        logits = model(x[s : s + batch_size])
        _check_finite(logits, "the clean forward pass")
        out.append(logits.argmax(1) == y[s : s + batch_size])
    return torch.cat(out).cpu()


def pgd_eval(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int,
    batch_size: int, seed: int,
) -> dict[str, torch.Tensor]:
    """PGD-k (CE, random start) with per-example robust flags, FOSC and SGCS of the same examples, and GradAlign
    at the clean inputs (its noise from a generator of its own, so the PGD starts do not depend on it).

    Returns CPU tensors ``flags`` (bool), ``fosc``, ``sgcs``, ``gradalign`` and ``x_adv`` (the PGD examples)."""
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same starts on every device (attacks.start_noise)
    gen_align = torch.Generator().manual_seed(seed + metrics.GRADALIGN_STREAM)
    flags, foscs, sgcss, aligns, advs = [], [], [], [], []
    for s in range(0, x.shape[0], batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        res = attacks.pgd(model, xb, yb, eps=eps, step_size=step_size, steps=steps, random_start=True,
                          mode="eval", record_grads=True, generator=gen)
        x_adv = res.x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        _check_finite(logits, "PGD")
        # each example's own CE loss (sum over the batch): FOSC gradient and PGD prediction in one pass
        (grad,) = torch.autograd.grad(F.cross_entropy(logits.float(), yb, reduction="sum"), x_adv)
        foscs.append(metrics.fosc_from_grad(xb, x_adv.detach(), grad, eps).detach().cpu())
        sgcss.append(metrics.sgcs(res.step_grads).cpu())
        aligns.append(metrics.gradalign(model, xb, yb, eps, gen_align).detach().cpu())
        flags.append((logits.detach().argmax(1) == yb).cpu())
        advs.append(res.x_adv.cpu())
    return {"flags": torch.cat(flags), "fosc": torch.cat(foscs), "sgcs": torch.cat(sgcss),
            "gradalign": torch.cat(aligns), "x_adv": torch.cat(advs)}


AA_AUTO_START = 4096  # first AutoAttack batch tried on a GPU when aa_batch_size is null


class AABatchOutOfMemory(RuntimeError):
    """AutoAttack ran out of GPU memory at a pinned ``aa_batch_size``; halving it would change the numbers."""


def aa_call(fn, rng_device: torch.device, used: dict[str, Any], *, pinned: bool = False,
            log=lambda msg: None, **kw):
    """Run one pyautoattack call. On CUDA out-of-memory: with a ``pinned`` batch raise
    :class:`AABatchOutOfMemory` (a smaller batch gives other numbers: pyautoattack reseeds per batch);
    otherwise halve the batch, say so through ``log`` and run the call again from scratch (same seed).
    ``used["aa_batch_size"]`` keeps the batch that worked, so later calls start there;
    ``used["aa_batch_halvings"]`` counts the halvings."""
    # pyautoattack reseeds the global RNGs; keep the caller's RNG state untouched
    devices = [rng_device] if rng_device.type == "cuda" else []
    while True:
        try:
            with torch.random.fork_rng(devices=devices):
                return fn(batch_size=used["aa_batch_size"], **kw)
        except torch.cuda.OutOfMemoryError:
            bs = used["aa_batch_size"]
            if pinned:
                raise AABatchOutOfMemory(
                    f"AutoAttack ran out of GPU memory at the pinned aa_batch_size {bs}; it is not halved because "
                    "the accuracy depends on the batch (pyautoattack reseeds every batch). Free the GPU (fewer jobs "
                    "on it: jobs_per_gpu) or set the suite's aa_batch_size lower for every run of the study "
                    "(null: halve on out-of-memory, recorded in the eval JSON)"
                ) from None
            if bs == 1:
                raise
            used["aa_batch_size"] = max(1, bs // 2)
            used["aa_batch_halvings"] = used.get("aa_batch_halvings", 0) + 1
            log(f"WARNING: AutoAttack out of GPU memory at batch {bs}; retrying from scratch at batch "
                f"{used['aa_batch_size']} (aa_batch_size null: the batch, and with it the accuracy, depends on "
                "free memory; recorded in the eval JSON)")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def aa_start_batch(suite: SuiteConfig, n: int, device: torch.device) -> int:
    """The AutoAttack batch to try first: the suite's, else the largest that may fit."""
    if suite.aa_batch_size is not None:
        return min(suite.aa_batch_size, max(n, 1))
    return min(AA_AUTO_START if device.type == "cuda" else suite.batch_size, max(n, 1))


def _empty_result() -> dict[str, Any]:
    return {k: None for k in NUMBER_KEYS}


def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    suite: SuiteConfig,
    *,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    log=print,
) -> dict[str, Any]:
    """Run ``suite.attacks`` on the examples (x float in [0, 1] or uint8, already the first n).

    Returns the flat result dict (numbers, ``unstable``, ``status``, ``autoattack_version``, timings);
    does not write anything. The model is put in eval mode (and channels_last on CUDA)."""
    device = torch.device(device)
    x = (to_float(x) if x.dtype == torch.uint8 else x).to(device).float()
    y = y.to(device).long()
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if num_classes is None:
        num_classes = getattr(getattr(model, "linear", None), "out_features", None)
    res: dict[str, Any] = _empty_result()
    res.update(status="ok", message=None, unstable=None, unstable_threshold=suite.unstable_threshold,
               autoattack_version=None, autoattack_attacks=None, aa_batch_size=None, aa_batch_pinned=None,
               aa_batch_halvings=None, autoattack_flags=None, autoattack_flag_messages=None, timings_s={})
    timings = res["timings_s"]
    run = set(suite.attacks)
    aa_settings = suite.aa_settings()
    bs = suite.batch_size
    robust_parts: dict[str, torch.Tensor] = {}  # AutoAttack components run on their own: name -> flags
    every_attack: list[torch.Tensor] = []  # robust flags of every attack run (worst_case_acc)
    aa_versions: list[str] = []
    try:
        with fp32_precision(), cudnn_benchmark_off(), contextlib.ExitStack() as stack:
            if "clean" in run:
                t = time.perf_counter()
                res["clean_acc"] = _acc(clean_flags(model, x, y, bs))
                timings["clean"] = time.perf_counter() - t
            else:  # still detect a diverged model before spending attack time
                clean_flags(model, x[:bs], y[:bs], bs)
            if "pgd10" in run:
                t = time.perf_counter()
                p = pgd_eval(model, x, y, eps=suite.eps, step_size=suite.pgd_step_size, steps=suite.pgd_steps,
                             batch_size=bs, seed=suite.seed)
                res["pgd10_acc"] = _acc(p["flags"])
                every_attack.append(p["flags"])
                res["fosc"] = float(p["fosc"].double().mean())
                res["sgcs"] = float(p["sgcs"].double().mean())
                res["gradalign"] = float(p["gradalign"].double().mean())
                timings["pgd10"] = time.perf_counter() - t
            # pyautoattack's own check warnings, by flag name, from every AutoAttack call below
            aa_flag_log = stack.enter_context(autoattack_eval.collect_flags(log))
            # pyautoattack uses .view() on inputs: give it the standard (contiguous) layout
            used = {"aa_batch_size": aa_start_batch(suite, x.shape[0], device), "aa_batch_halvings": 0}
            aa_kw = dict(model=model, x=x.contiguous(memory_format=torch.contiguous_format), y=y, used=used,
                         pinned=suite.aa_batch_size is not None, log=log,
                         settings=aa_settings, device=device, num_classes=num_classes)
            if "autoattack_individual" in run:
                t = time.perf_counter()
                flags, v = aa_call(autoattack_eval.run_individual, device,
                                    attacks=list(autoattack_eval.STANDARD_ATTACKS), **aa_kw)
                robust_parts.update(flags)
                aa_versions.append(v)
                timings["autoattack_individual"] = time.perf_counter() - t
            if "square" in run and "square" not in robust_parts:
                # Square alone: pyautoattack version='custom', attacks=['square'] (same as the individual run's)
                t = time.perf_counter()
                flags, v = aa_call(autoattack_eval.run_individual, device, attacks=["square"], **aa_kw)
                robust_parts.update(flags)
                timings["square"] = time.perf_counter() - t
            for name, flags in robust_parts.items():
                res[ATTACK_KEYS[name]] = _acc(flags)
            if "autoattack" in run:
                t = time.perf_counter()
                ens, v = aa_call(autoattack_eval.run_ensemble, device,
                                  attacks=list(autoattack_eval.STANDARD_ATTACKS), **aa_kw)
                aa_versions.append(v)
                res["autoattack_acc"] = _acc(ens)  # the ensemble's own number (module docstring)
                every_attack.append(ens)
                timings["autoattack"] = time.perf_counter() - t
            every_attack += robust_parts.values()
            if every_attack:  # robust only where every attack failed
                res["worst_case_acc"] = _acc(torch.stack(every_attack).all(dim=0))
            if robust_parts or aa_versions:
                res["aa_batch_size"] = used["aa_batch_size"]
                res["aa_batch_pinned"] = suite.aa_batch_size is not None
                res["aa_batch_halvings"] = used["aa_batch_halvings"]
                res["autoattack_flags"] = dict(sorted(aa_flag_log.counts.items()))
                res["autoattack_flag_messages"] = dict(sorted(aa_flag_log.messages.items()))
            if aa_versions:
                res["autoattack_version"] = "custom" if "custom" in aa_versions else "standard"
                res["autoattack_attacks"] = list(autoattack_eval.STANDARD_ATTACKS)
    except NonFiniteLogits as e:
        res = _empty_result()
        res.update(status="diverged", message=str(e), unstable=None, unstable_threshold=suite.unstable_threshold,
                   autoattack_version=None, autoattack_attacks=None, timings_s=timings)
        return res
    if res["pgd10_acc"] is not None and res["square_acc"] is not None:
        res["gap_pgd_square"] = res["pgd10_acc"] - res["square_acc"]
    if res["pgd10_acc"] is not None and res["autoattack_acc"] is not None:
        res["gap_pgd_aa"] = res["pgd10_acc"] - res["autoattack_acc"]
    res["unstable"] = classify(res["pgd10_acc"], res["square_acc"], suite.unstable_threshold)
    return res


def evaluate_checkpoint(
    model: nn.Module,
    ckpt: dict,
    images: torch.Tensor,
    labels: torch.Tensor,
    suite: SuiteConfig,
    *,
    suite_name: str,
    checkpoint_path: str | Path,
    out: str | Path,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    landscape_out: str | Path | None = None,
    last: tuple[nn.Module, dict] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a loaded checkpoint on the first ``suite.n_examples`` test examples; write the JSON
    ``out`` (and the landscape .npz when ``landscape_out``) atomically; return the JSON dict.

    ``last=(model, ckpt)``: the run's last-epoch checkpoint, evaluated with the same suite on the same
    examples into ``doc["last"]`` (its numbers, ``unstable``, ``status``, ``epoch``); when it is the same
    epoch as ``ckpt`` it holds the same weights and is not attacked again. ``extra`` is merged into the doc."""
    device = torch.device(device)
    n = images.shape[0] if suite.n_examples is None else min(suite.n_examples, images.shape[0])
    t0 = time.perf_counter()
    res = evaluate_model(model, images[:n], labels[:n], suite, device=device, num_classes=num_classes)
    last_doc = None
    if last is not None:
        last_model, last_ckpt = last
        same = last_ckpt.get("epoch") is not None and last_ckpt.get("epoch") == ckpt.get("epoch")
        last_res = res if same else evaluate_model(last_model, images[:n], labels[:n], suite, device=device,
                                                   num_classes=num_classes)
        last_doc = {"epoch": last_ckpt.get("epoch"), "same_as_best": same, "status": last_res["status"],
                    "unstable": last_res["unstable"], **{k: _finite_or_none(last_res[k]) for k in NUMBER_KEYS}}
    landscape_path = None
    if landscape_out is not None:
        lc = suite.landscape
        k = min(lc.n_images, images.shape[0])
        xl = images[:k].to(device)
        xl = to_float(xl) if xl.dtype == torch.uint8 else xl.float()
        if res["status"] == "ok":
            with fp32_precision(), cudnn_benchmark_off():
                land = compute_landscape(model.eval(), xl, labels[:k].to(device), lc)
        else:  # diverged: keep the artifact (the workflow expects it) but with NaN losses
            import numpy as np

            from trades_instability.core.landscape import grid_axes

            a, b = grid_axes(lc)
            nan = np.full((k, len(a), len(b)), np.nan)
            land = {"loss": nan.mean(0), "loss_per_image": nan, "a": a, "b": b}
        save_landscape(landscape_out, land, lc)
        landscape_path = str(landscape_out)
    wall = time.perf_counter() - t0
    planted = planted_report(ckpt)
    if last_doc is not None and planted is not None:
        last_doc["planted"] = planted_report(last[1])
    doc = {
        **{k: res[k] for k in NUMBER_KEYS},
        "unstable": res["unstable"],
        "unstable_threshold": res["unstable_threshold"],
        "n_examples": int(n),
        "attack_seed": suite.seed,
        "suite": suite_name,
        "checkpoint": str(checkpoint_path),
        "epoch": ckpt.get("epoch"),
        "checkpoint_kind": ckpt.get("kind"),
        "status": res["status"],
        "message": res["message"],
        "eps": suite.eps,
        "autoattack_version": res["autoattack_version"],
        "autoattack_attacks": res["autoattack_attacks"],
        # the AutoAttack batch used (the accuracy depends on it, see SuiteConfig), whether the suite pinned it,
        # and how often it was halved on out-of-memory (aa_batch_size null only; > 0: not comparable)
        "aa_batch_size": res.get("aa_batch_size"),
        "aa_batch_pinned": res.get("aa_batch_pinned"),
        "aa_batch_halvings": res.get("aa_batch_halvings"),
        # pyautoattack's own reliability checks (autoattack_eval.FLAG_MESSAGES): {flag: times raised} over every
        # AutoAttack call of the suite ({}: checked, none raised; null: no AutoAttack call), and each first message
        "autoattack_flags": res.get("autoattack_flags"),
        "autoattack_flag_messages": res.get("autoattack_flag_messages"),
        "paper_columns": PAPER_COLUMNS,
        "suite_config": suite.to_dict(),
        "landscape": landscape_path,
        "versions": library_versions(),
        "device": device_description(device),
        "precision": "fp32 (TF32 off)",
        "wall_time_s": wall,
        "examples_per_s": (n / wall) if wall > 0 else None,
        "timings_s": res["timings_s"],
        # planted gradient masking (core/masking.py): how, whether the attacked model was behind it, what the
        # detectors read on that kind; null for every model that was not planted
        "planted": planted,
        **({"last": last_doc} if last_doc is not None else {}),
        **(extra or {}),
    }
    for key in NUMBER_KEYS:  # JSON has no NaN: a non-finite number (should not happen) becomes null
        doc[key] = _finite_or_none(doc[key])
    write_json(out, doc)
    return doc


def planted_report(ckpt: dict) -> dict[str, Any] | None:
    """The evaluation JSON's ``planted`` entry of a checkpoint (core/masking.report); None when not planted."""
    planted = (ckpt.get("model_meta") or {}).get("planted")
    if not planted:
        return None
    from trades_instability.core import masking

    cfg = ckpt.get("config") or {}
    return masking.report(planted, int(cfg.get("epochs", ckpt.get("epoch") or 1)))


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


__all__ = [
    "PAPER_COLUMNS", "ATTACK_KEYS", "ATTACK_NAMES", "NUMBER_KEYS", "SuiteConfig", "SuiteError", "builtin_suites",
    "load_suites", "suite_from_dict", "get_suite", "fp32_precision", "resolve_device", "classify", "clean_flags",
    "pgd_eval", "AABatchOutOfMemory", "aa_call", "aa_start_batch", "evaluate_model", "evaluate_checkpoint",
    "LandscapeConfig", "planted_report",
]
