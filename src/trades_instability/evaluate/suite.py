"""Evaluation of a trained checkpoint: clean, PGD-10 (+ FOSC, SGCS), Square, AutoAttack; classification.

Suites: :mod:`trades_instability.evaluate.suite_config` (:class:`SuiteConfig`, the built-in suites and a YAML
file of the same shape). Clean and PGD-10 (+ FOSC, SGCS): :mod:`trades_instability.evaluate.pgd_eval`. AutoAttack's
batch on out-of-memory: :mod:`trades_instability.evaluate.aa_batching`. This module runs a suite
(:func:`evaluate_model`) and writes the eval JSON (:func:`evaluate_checkpoint`).

Conventions (they matter for comparing runs):

* The evaluated examples are the FIRST ``n_examples`` of the test set (null = all), so every run of
  a study sees the same images.
* Reported attacks run in fp32 with TF32 off and the model in eval mode (:func:`pgd_eval.fp32_precision`).
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

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trades_instability.core.landscape import LandscapeConfig, compute_landscape
from trades_instability.core.verdict import is_unstable
from trades_instability.data.datasets import to_float
from trades_instability.evaluate import autoattack as autoattack_eval
from trades_instability.evaluate.aa_batching import aa_call, aa_start_batch
from trades_instability.evaluate.pgd_eval import NonFiniteLogits, clean_flags, fp32_precision, pgd_eval
from trades_instability.evaluate.suite_config import SuiteConfig
from trades_instability.rundir.atomic_io import write_json
from trades_instability.rundir.records import save_landscape
from trades_instability.runtime import cudnn_benchmark_off, device_description, library_versions

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

# Unstable instance (paper, Tables 2/4): PGD-10 accuracy exceeds Square accuracy by >= threshold
classify = is_unstable


def _acc(flags: torch.Tensor) -> float:
    return float(flags.float().mean())


def _empty_result() -> dict[str, Any]:
    return {k: None for k in NUMBER_KEYS}


def _on_device(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device):
    """The model in eval mode and the examples (float) on ``device``, both channels_last on CUDA."""
    x = (to_float(x) if x.dtype == torch.uint8 else x).to(device).float()
    y = y.to(device).long()
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x, y


def _ok_result(suite: SuiteConfig) -> dict[str, Any]:
    """The result dict before any attack: every number null, ``status: "ok"``."""
    res: dict[str, Any] = _empty_result()
    res.update(status="ok", message=None, unstable=None, unstable_threshold=suite.unstable_threshold,
               autoattack_version=None, autoattack_attacks=None, aa_batch_size=None, aa_batch_pinned=None,
               aa_batch_halvings=None, autoattack_flags=None, autoattack_flag_messages=None, timings_s={})
    return res


def _clean_and_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, suite: SuiteConfig, run: set[str],
                   res: dict[str, Any], every_attack: list[torch.Tensor]) -> None:
    """Clean accuracy and PGD-10 with FOSC, SGCS and GradAlign into ``res`` (the PGD flags into ``every_attack``)."""
    timings = res["timings_s"]
    bs = suite.batch_size
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


def _autoattack_runs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, suite: SuiteConfig, run: set[str],
                     res: dict[str, Any], every_attack: list[torch.Tensor], *, device: torch.device,
                     num_classes: int | None, log):
    """The AutoAttack components alone, Square alone and the ensemble, as ``run`` asks, into ``res`` (the
    ensemble's flags into ``every_attack``). Returns the components' flags, the versions run and the batch used."""
    timings = res["timings_s"]
    robust_parts: dict[str, torch.Tensor] = {}  # AutoAttack components run on their own: name -> flags
    aa_versions: list[str] = []
    # pyautoattack uses .view() on inputs: give it the standard (contiguous) layout
    used = {"aa_batch_size": aa_start_batch(suite, x.shape[0], device), "aa_batch_halvings": 0}
    aa_kw = dict(model=model, x=x.contiguous(memory_format=torch.contiguous_format), y=y, used=used,
                 pinned=suite.aa_batch_size is not None, log=log,
                 settings=suite.aa_settings(), device=device, num_classes=num_classes)
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
    return robust_parts, aa_versions, used


def _record_autoattack(res: dict[str, Any], suite: SuiteConfig, used: dict[str, Any], aa_flag_log,
                       robust_parts: dict[str, torch.Tensor], aa_versions: list[str]) -> None:
    """The AutoAttack entries of ``res``: batch, pyautoattack's flags and the version (none without AutoAttack)."""
    if robust_parts or aa_versions:
        res["aa_batch_size"] = used["aa_batch_size"]
        res["aa_batch_pinned"] = suite.aa_batch_size is not None
        res["aa_batch_halvings"] = used["aa_batch_halvings"]
        res["autoattack_flags"] = dict(sorted(aa_flag_log.counts.items()))
        res["autoattack_flag_messages"] = dict(sorted(aa_flag_log.messages.items()))
    if aa_versions:
        res["autoattack_version"] = "custom" if "custom" in aa_versions else "standard"
        res["autoattack_attacks"] = list(autoattack_eval.STANDARD_ATTACKS)


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
    model, x, y = _on_device(model, x, y, device)
    if num_classes is None:
        num_classes = getattr(getattr(model, "linear", None), "out_features", None)
    res = _ok_result(suite)
    timings = res["timings_s"]
    run = set(suite.attacks)
    every_attack: list[torch.Tensor] = []  # robust flags of every attack run (worst_case_acc)
    try:
        with fp32_precision(), cudnn_benchmark_off():
            _clean_and_pgd(model, x, y, suite, run, res, every_attack)
            # pyautoattack's own check warnings, by flag name, from every AutoAttack call
            with autoattack_eval.collect_flags(log) as aa_flag_log:
                robust_parts, aa_versions, used = _autoattack_runs(
                    model, x, y, suite, run, res, every_attack, device=device, num_classes=num_classes, log=log)
                every_attack += robust_parts.values()
                if every_attack:  # robust only where every attack failed
                    res["worst_case_acc"] = _acc(torch.stack(every_attack).all(dim=0))
                _record_autoattack(res, suite, used, aa_flag_log, robust_parts, aa_versions)
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


def _last_doc(last: tuple[nn.Module, dict], ckpt: dict, res: dict[str, Any], x: torch.Tensor, y: torch.Tensor,
              suite: SuiteConfig, device: torch.device, num_classes: int | None) -> dict[str, Any]:
    """The eval JSON's ``last`` entry (see :func:`evaluate_checkpoint`); ``res`` is the best checkpoint's result."""
    last_model, last_ckpt = last
    same = last_ckpt.get("epoch") is not None and last_ckpt.get("epoch") == ckpt.get("epoch")
    last_res = res if same else evaluate_model(last_model, x, y, suite, device=device, num_classes=num_classes)
    return {"epoch": last_ckpt.get("epoch"), "same_as_best": same, "status": last_res["status"],
            "unstable": last_res["unstable"], **{k: _finite_or_none(last_res[k]) for k in NUMBER_KEYS}}


def _landscape(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, lc: LandscapeConfig, ok: bool,
               device: torch.device) -> dict[str, Any]:
    """The loss landscape on the first ``lc.n_images`` examples; NaN losses for a diverged model (``ok`` false)."""
    k = min(lc.n_images, images.shape[0])
    xl = images[:k].to(device)
    xl = to_float(xl) if xl.dtype == torch.uint8 else xl.float()
    if ok:
        with fp32_precision(), cudnn_benchmark_off():
            return compute_landscape(model.eval(), xl, labels[:k].to(device), lc)
    # diverged: keep the artifact (the workflow expects it) but with NaN losses
    import numpy as np

    from trades_instability.core.landscape import grid_axes

    a, b = grid_axes(lc)
    nan = np.full((k, len(a), len(b)), np.nan)
    return {"loss": nan.mean(0), "loss_per_image": nan, "a": a, "b": b}


def _eval_doc(res: dict[str, Any], suite: SuiteConfig, *, n: int, suite_name: str, checkpoint_path: str | Path,
              ckpt: dict, device: torch.device, landscape_path: str | None, wall: float,
              planted: dict[str, Any] | None) -> dict[str, Any]:
    """The eval JSON of one checkpoint, without ``last`` and the caller's extra keys."""
    return {
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
    }


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
        last_doc = _last_doc(last, ckpt, res, images[:n], labels[:n], suite, device, num_classes)
    landscape_path = None
    if landscape_out is not None:
        land = _landscape(model, images, labels, suite.landscape, res["status"] == "ok", device)
        save_landscape(landscape_out, land, suite.landscape)
        landscape_path = str(landscape_out)
    wall = time.perf_counter() - t0
    planted = planted_report(ckpt)
    if last_doc is not None and planted is not None:
        last_doc["planted"] = planted_report(last[1])
    doc = _eval_doc(res, suite, n=n, suite_name=suite_name, checkpoint_path=checkpoint_path, ckpt=ckpt,
                    device=device, landscape_path=landscape_path, wall=wall, planted=planted)
    if last_doc is not None:
        doc["last"] = last_doc
    doc.update(extra or {})
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
    "PAPER_COLUMNS", "ATTACK_KEYS", "NUMBER_KEYS", "classify", "evaluate_model", "evaluate_checkpoint",
    "planted_report",
]
