"""The bench's evaluation timing (:mod:`trades_instability.tools.bench`): PGD-10 validation in fp32 and bf16,
AutoAttack in fp32 and, for a trained checkpoint, the fp32-vs-bf16 agreement table."""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from typing import Any

import torch
from torch import nn

from trades_instability.core.memory_format import use_channels_last
from trades_instability.data.datasets import to_float
from trades_instability.tools import precision_check
from trades_instability.tools.bench_training import ProjectStepper, run_config
from trades_instability.tools.flops import sync
from trades_instability.tools.text_table import fmt, render_table

EVAL_HEADERS = ["evaluation", "precision", "examples", "batch", "seconds", "examples/s", "result"]


def print_evaluation(args: argparse.Namespace, device: torch.device, fast32: ProjectStepper, splits,
                     trained) -> dict[str, Any]:
    """The evaluation table and, with a trained checkpoint (and bf16), the precision agreement table;
    returns their JSON records ("eval", "precision_agreement")."""
    model, channels_last, test, num_classes, what = _eval_target(args, device, fast32, splits, trained)
    print()
    print(f"evaluation: {what}")
    eval_rows, eval_json = _bench_eval(args, device, model, channels_last, test, num_classes)
    print(render_table(EVAL_HEADERS, eval_rows))
    print("PGD-10 validation: train.validation.validate (what the trainer runs each epoch); AutoAttack: "
          "evaluate.suite.evaluate_model, fp32 with TF32 off; its time depends on how many examples stay robust")
    out: dict[str, Any] = {"eval": eval_json}
    if trained is not None and not args.no_bf16:
        rows, agree_json = _precision_agreement(args, device, model, test, num_classes)
        print()
        print(render_table(precision_check.HEADERS, rows))
        print("fp32 and bf16 autocast on the same examples with the same attack seed (PGD-10 via "
              "evaluate.pgd_eval.pgd_eval, Square via pyautoattack); 'fp32 seed+1' reruns fp32 with the next attack "
              "seed; SE: standard error of the fp32 number; 'changed ex.': examples whose flag differs; "
              "paired p: McNemar (accuracies) or paired z (FOSC, SGCS); same: unless p < 0.05 and "
              "|bf16 - fp32| >= SE/2")
        out["precision_agreement"] = agree_json
    return out


def _eval_target(args: argparse.Namespace, device: torch.device, fast32: ProjectStepper, splits, trained):
    """What the evaluation runs on: the bench's untrained model and test set, or the trained checkpoint and
    its own test set. Returns (model, channels_last, test, num_classes, description)."""
    channels_last = fast32.trainer.channels_last
    if trained is None:
        model, test, num_classes = fast32.trainer.model, splits.test, splits.num_classes
        what = "the untrained model (give --checkpoint for a trained one)"
    else:
        model, ckpt, tsplits = trained
        channels_last = use_channels_last(model, device, fast32.trainer.cfg.channels_last)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        test, num_classes = tsplits.test, tsplits.num_classes
        what = (f"checkpoint {args.checkpoint} (epoch {ckpt.get('epoch')}, {ckpt['model_meta']}) on its "
                f"{tsplits.name} test set")
    return model, channels_last, test, num_classes, what


def _bench_eval(args, device: torch.device, model: nn.Module, channels_last: bool, test, num_classes: int):
    """PGD-10 validation (fp32, bf16) then AutoAttack (fp32) on the first eval-n test examples: table rows
    and JSON records."""
    from trades_instability.data.datasets import ImageSet

    n = min(args.eval_n, len(test))
    xs = test.images[:n]
    ys = test.labels[:n]
    val_set = ImageSet(xs, ys).to(device)
    rows, out = [], []
    for precision in ("fp32",) if args.no_bf16 else ("fp32", "bf16"):
        row, rec = _time_validation(args, device, model, channels_last, xs, ys, val_set, precision)
        rows.append(row)
        out.append(rec)
    row, rec = _time_autoattack(args, device, model, xs, ys, num_classes)
    rows.append(row)
    out.append(rec)
    return rows, out


def _time_validation(args, device: torch.device, model: nn.Module, channels_last: bool, xs: torch.Tensor,
                     ys: torch.Tensor, val_set, precision: str):
    """The trainer's PGD-10 validation (+FOSC, SGCS) in ``precision``, after a 2-example warm-up."""
    from trades_instability.data.datasets import ImageSet
    from trades_instability.train.validation import validate

    n = len(xs)
    cfg = run_config(args, device, precision, 1)
    cfg.val_batch_size = args.eval_batch_size or 512
    ac = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    gen = torch.Generator().manual_seed(args.seed)  # as the trainer's validation: a CPU generator
    validate(model, ImageSet(xs[:2], ys[:2]).to(device), cfg, device, gen, ac, channels_last=channels_last)
    sync(device)
    t = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)  # as the trainer's validation: a CPU generator
    val = validate(model, val_set, cfg, device, gen, ac, channels_last=channels_last)
    sync(device)
    dt = time.perf_counter() - t
    res = f"clean {val['clean_acc']:.3f} pgd10 {val['pgd_acc']:.3f} fosc {val['fosc']:.4f}"
    row = ["PGD-10 validation (+FOSC, SGCS)", precision, str(n), str(min(cfg.val_batch_size, n)),
           fmt(dt, ".2f"), fmt(n / dt, ".1f"), res]
    return row, {"what": "pgd10_validation", "precision": precision, "n": n, "seconds": dt, "examples_per_s": n / dt,
                 **val}


def _time_autoattack(args, device: torch.device, model: nn.Module, xs: torch.Tensor, ys: torch.Tensor,
                     num_classes: int):
    """AutoAttack through evaluate.suite.evaluate_model (fp32), at the standard or the reduced budget."""
    from trades_instability.evaluate import suite as evaluation
    from trades_instability.evaluate.suite_config import SuiteConfig

    n = len(xs)
    standard = args.aa_budget == "standard"
    suite = SuiteConfig(
        attacks=["autoattack"], n_examples=n, batch_size=args.eval_batch_size or n, seed=args.seed,
        aa_batch_size=None,  # a speed measurement: the largest batch that fits, not the reported suites' pin
        **({} if standard else {"apgd_iters": 5 if args.tiny else 20, "fab_iters": 5 if args.tiny else 20,
                                "n_target_classes": 3, "square_queries": 20 if args.tiny else 200}),
    )
    model_eval = copy.deepcopy(model).eval()
    t = time.perf_counter()
    res = evaluation.evaluate_model(model_eval, xs, ys, suite, device=device, num_classes=num_classes)
    sync(device)
    dt = time.perf_counter() - t
    budget = ("standard" if standard else
              f"reduced: apgd {suite.apgd_iters} it, fab {suite.fab_iters} it, {suite.n_target_classes} targets, "
              f"square {suite.square_queries} q")
    row = [f"AutoAttack ({res.get('autoattack_version')}; {budget})", "fp32", str(n), str(suite.batch_size),
           fmt(dt, ".2f"), fmt(n / dt, ".1f"),
           f"robust {fmt(res.get('autoattack_acc'), '.3f')} ({res.get('status')})"]
    return row, {"what": "autoattack", "precision": "fp32", "n": n, "batch_size": suite.batch_size, "seconds": dt,
                 "examples_per_s": n / dt, "budget": budget, "autoattack_acc": res.get("autoattack_acc"),
                 "version": res.get("autoattack_version")}


def _precision_agreement(args, device: torch.device, model: nn.Module, test, num_classes: int):
    """fp32 vs bf16 autocast on the trained model: :func:`precision_check.compare` on the first eval-n
    test examples, Square at the bench's AutoAttack budget."""
    from trades_instability.evaluate.suite_config import SuiteConfig

    n = min(args.eval_n, len(test))
    x = to_float(test.images[:n].to(device))
    y = test.labels[:n].to(device)
    standard = args.aa_budget == "standard"
    reduced = {} if standard else {"square_queries": 20 if args.tiny else 200}  # standard: SuiteConfig's default
    suite = SuiteConfig(batch_size=args.eval_batch_size or 512, seed=args.seed, **reduced)
    print(f"precision agreement: {n} examples, PGD-{suite.pgd_steps}, Square {suite.square_queries} queries")
    sys.stdout.flush()
    rows = precision_check.compare(copy.deepcopy(model).eval(), x, y, suite, device=device, num_classes=num_classes)
    return precision_check.table_rows(rows), {"n": n, "square_queries": suite.square_queries,
                                              "rows": [r.to_dict() for r in rows]}
