"""``trades-eval``: evaluate one checkpoint with one suite and write its JSON (and landscape .npz).

    trades-eval --checkpoint C [--last-checkpoint L] --suite NAME --out J [--suites FILE.yaml]
                [--data-root D] [--device auto|cpu|cuda] [--landscape-out L.npz] [--n-examples N]
    trades-eval --state-dict F --arch A --num-classes K --normalize none|DATASET|mean,std [--width W]
                --dataset D --suite NAME --out J [...]
    trades-eval --robustbench NAME --dataset cifar10|cifar100 --suite NAME --out J [...]

A checkpoint of this project (``--checkpoint``) brings its run config: the test set is loaded as it
says (dataset, data_root, synthetic.*), with ``--data-root`` overriding the folder; ``--last-checkpoint``
(the same run's checkpoints/last.pt) is evaluated too, into the JSON's ``last``. A foreign model (a plain
state_dict, or a RobustBench model cached under ``{data_root}/robustbench``; trades_instability.evaluate.foreign)
is evaluated on ``--dataset`` from ``--data-root`` (default ``data``). Every argument problem (missing/truncated/foreign
checkpoint, weights that do not fit the declared architecture, unknown suite or attack, missing
dataset, an output that cannot be written, robustbench not installed or offline) is reported as ONE line
on stderr with exit code 2, before any attack runs; a write that fails later (full disk) is one line naming
the file, exit code 1, and so is AutoAttack running out of GPU memory at a pinned ``aa_batch_size``
(aa_batching.AABatchOutOfMemory). A diverged model (non-finite logits) is not an error: its JSON says
``status: "diverged"`` (exit 0). One process writes an ``--out`` at a time (a lock file ``.<out>.lock`` beside
it): a second one waits for the first, and adopts the output it wrote instead of evaluating again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trades_instability.config.run import DATASETS, ConfigError, from_dict
from trades_instability.core.models import ARCH_NAMES
from trades_instability.evaluate import aa_batching, suite_config
from trades_instability.evaluate import foreign as foreign_models
from trades_instability.evaluate import suite as evaluation
from trades_instability.rundir.atomic_io import check_writable_output
from trades_instability.rundir.checkpoint import CheckpointError, load_model
from trades_instability.rundir.lock import RunLock, RunLocked, describe
from trades_instability.runtime import resolve_device


class _ArgError(Exception):
    pass


class CheckpointInputError(ValueError):
    """A checkpoint or its test set cannot be used; the message names the file and the problem."""


def load_checkpoint_with_data(checkpoint, device, data_root: str | None = None):
    """Load a trades-train checkpoint and the test set its stored run config names (``data_root``
    overrides the folder); returns ``(model, ckpt, splits)``. Every problem (missing, truncated or
    foreign file, weights that do not fit, a config that disagrees with the weights, a missing dataset,
    a class count that differs) is one :class:`CheckpointInputError`, raised before any attack runs."""
    from trades_instability.data import datasets as data
    from trades_instability.data.splits import load_splits

    try:
        model, ckpt = load_model(checkpoint, device)
    except (CheckpointError, ValueError, KeyError, TypeError) as e:
        raise CheckpointInputError(str(e)) from None
    try:
        cfg = from_dict(ckpt["config"])
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointInputError(f"checkpoint {checkpoint} has no valid stored run config ({e})") from None
    meta = ckpt["model_meta"]
    if (cfg.arch, cfg.width) != (meta.get("arch"), meta.get("width")):
        raise CheckpointInputError(
            f"checkpoint {checkpoint}: model_meta {meta} disagrees with its run config "
            f"(arch={cfg.arch}, width={cfg.width})"
        )
    # the model normalises its input as it was trained to (model_meta "normalize"; older checkpoints lack it)
    if "normalize" in meta and (meta["normalize"] is not None) != cfg.normalize_input:
        raise CheckpointInputError(
            f"checkpoint {checkpoint}: model_meta normalize={meta['normalize']} disagrees with its run config "
            f"(normalize_input={cfg.normalize_input})"
        )
    if data_root is not None:
        cfg.data_root = data_root
    try:
        splits = load_splits(cfg)
    except data.DatasetUnavailable as e:
        raise CheckpointInputError(" ".join(str(e).split())) from None
    if splits.num_classes != meta.get("num_classes"):
        raise CheckpointInputError(
            f"checkpoint {checkpoint} has {meta.get('num_classes')} classes but the "
            f"{splits.name} test set has {splits.num_classes}"
        )
    return model, ckpt, splits


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's default prints the usage too)
        raise _ArgError(f"trades-eval: {message}")


def load_foreign_with_data(args, device):
    """The model of ``--state-dict`` / ``--robustbench`` and the ``--dataset`` test set; returns
    ``(model, ckpt, splits, source)`` (``ckpt`` a stand-in with no epoch). Problems: CheckpointInputError."""
    from trades_instability.data import datasets as data
    from trades_instability.data.splits import load_splits

    try:
        cfg = from_dict({"dataset": args.dataset, "data_root": args.data_root or "data", "download": False})
        splits = load_splits(cfg)
    except (ConfigError, data.DatasetUnavailable) as e:
        raise CheckpointInputError(" ".join(str(e).split())) from None
    try:
        if args.robustbench is not None:
            cache = f"{cfg.data_root}/robustbench"
            model = foreign_models.load_robustbench_model(args.robustbench, args.dataset, cache)
            source = {"robustbench": args.robustbench, "threat_model": foreign_models.ROBUSTBENCH_THREAT_MODEL,
                      "cache": str(foreign_models.robustbench_cache_file(cache, args.robustbench, args.dataset))}
            kind, path = "robustbench", f"robustbench:{args.robustbench}"
        else:
            normalize = foreign_models.parse_normalize(args.normalize)
            if args.num_classes != splits.num_classes:
                raise CheckpointInputError(f"--num-classes {args.num_classes} but the {splits.name} test set "
                                           f"has {splits.num_classes} classes")
            model = foreign_models.load_state_dict_model(args.state_dict, args.arch, args.num_classes,
                                                         args.width, normalize)
            source = {"arch": args.arch, "width": args.width, "num_classes": args.num_classes,
                      "normalize": normalize}
            kind, path = "state_dict", args.state_dict
    except foreign_models.ForeignModelError as e:
        raise CheckpointInputError(str(e)) from None
    return model.to(device).eval(), {"epoch": None, "kind": kind, "path": path}, splits, source


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="trades-eval", description="Evaluate a checkpoint (clean, PGD-10 + FOSC/SGCS, Square, "
                "AutoAttack; Unstable verdict).")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="checkpoint written by trades-train (best.pt, last.pt)")
    what.add_argument("--state-dict", help="a plain state_dict file of --arch (foreign checkpoint)")
    what.add_argument("--robustbench", metavar="NAME",
                      help="a RobustBench model name (L-inf), via robustbench.utils.load_model")
    p.add_argument("--suite", required=True, help="suite name (builtin: cheap, aa, full; or one from --suites)")
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--suites", default=None, help="YAML file of suites {name: {attacks: [...], n_examples, ...}}")
    p.add_argument("--data-root", default=None, help="override the data_root stored in the checkpoint's config "
                   "(foreign models: the data folder, default 'data'; RobustBench models are cached in its "
                   "robustbench/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--landscape-out", default=None, help="also write the Figure 1 loss landscape (.npz)")
    p.add_argument("--n-examples", type=int, default=None,
                   help="override the suite's n_examples (first N test examples)")
    p.add_argument("--last-checkpoint", default=None, help="with --checkpoint: the same run's last-epoch checkpoint, "
                   "evaluated with the same suite into the JSON's 'last'")
    f = p.add_argument_group("foreign models (--state-dict, --robustbench)")
    f.add_argument("--dataset", default="cifar10", choices=list(DATASETS), help="test set (default cifar10)")
    f.add_argument("--arch", choices=ARCH_NAMES, help="architecture of --state-dict")
    f.add_argument("--num-classes", type=int, help="classes of --state-dict")
    f.add_argument("--width", type=int, default=64, help="width of --state-dict (64 = published size)")
    f.add_argument("--normalize", help="input normalisation the --state-dict model was trained with: none, a dataset "
                   "name (its mean/std), mean,std or m1,m2,m3,s1,s2,s3")
    return p


def _check_foreign_args(args) -> None:
    if args.state_dict is not None:
        missing = [o for o, v in (("--arch", args.arch), ("--num-classes", args.num_classes),
                                  ("--normalize", args.normalize)) if v is None]
        if missing:
            raise _ArgError(f"trades-eval: --state-dict needs {', '.join(missing)} (the model's architecture, class "
                            "count and input normalisation are not stored in a plain state_dict)")
    elif args.checkpoint is None and (args.arch or args.num_classes or args.normalize):
        raise _ArgError("trades-eval: --arch/--num-classes/--normalize belong to --state-dict (a RobustBench model "
                        "brings its own architecture and normalisation)")
    if args.robustbench is not None:  # before loading any data: one line instead of minutes of work
        try:
            foreign_models.require_robustbench()
        except foreign_models.ForeignModelError as e:
            raise _ArgError(f"trades-eval: {e}") from None
    if args.last_checkpoint is not None and args.checkpoint is None:
        raise _ArgError("trades-eval: --last-checkpoint needs --checkpoint (the best checkpoint of the same run)")


def _prepare(argv):
    """Parse and check everything that can be wrong with the arguments; load model and data."""
    args = build_parser().parse_args(argv)
    _check_foreign_args(args)
    for path, what in ((args.out, "--out"), (args.landscape_out, "--landscape-out")):
        if path is not None:  # before any attack runs: a bad output must not cost the evaluation
            try:
                check_writable_output(path, what)
            except OSError as e:
                raise _ArgError(f"trades-eval: {e}") from None
    try:
        suites = suite_config.load_suites(args.suites)
        suite = suite_config.get_suite(suites, args.suite)
        if args.n_examples is not None:
            suite = suite_config.suite_from_dict(args.suite, {"n_examples": args.n_examples}, base=suite)
    except suite_config.SuiteError as e:
        raise _ArgError(f"trades-eval: {e}") from None
    try:
        device = resolve_device(args.device)
    except RuntimeError as e:
        raise _ArgError(f"trades-eval: {e}") from None
    last, source = None, None
    try:
        if args.checkpoint is not None:
            model, ckpt, splits = load_checkpoint_with_data(args.checkpoint, device, args.data_root)
            if args.last_checkpoint is not None:
                last_model, last_ckpt, _ = load_checkpoint_with_data(args.last_checkpoint, device, args.data_root)
                if last_ckpt.get("config") != ckpt.get("config"):
                    raise CheckpointInputError(f"--last-checkpoint {args.last_checkpoint} belongs to another run "
                                               f"(its run config differs from that of {args.checkpoint})")
                last = (last_model, last_ckpt)
        else:
            model, ckpt, splits, source = load_foreign_with_data(args, device)
    except CheckpointInputError as e:
        raise _ArgError(f"trades-eval: {e}") from None
    if "autoattack_individual" in suite.attacks or "autoattack" in suite.attacks:
        if splits.num_classes < 4:
            raise _ArgError(f"trades-eval: AutoAttack's DLR attacks need at least 4 classes, {splits.name} has "
                            f"{splits.num_classes}")
    return args, suite, device, model, ckpt, splits, last, source


def _adopt_or_lock(args) -> tuple[RunLock | None, int | None]:
    """One evaluation per output at a time: wait for a live process writing ``--out`` (e.g. a job a killed
    Snakemake left running, rundir/lock.py); adopt the output it wrote (exit 0), else hold the lock."""
    out = Path(args.out)
    lock = RunLock(out.parent, name=f".{out.name}.lock", log=lambda m: print(f"trades-eval: {m}", flush=True))
    try:
        waited = lock.acquire(wait=True)
    except RunLocked as e:
        print(f"trades-eval: error: {e}", file=sys.stderr)
        return None, 2
    except OSError as e:
        print(f"trades-eval: error: {e}", file=sys.stderr)
        return None, 1
    if waited is not None and out.is_file() and (args.landscape_out is None or Path(args.landscape_out).is_file()):
        print(f"trades-eval: {out} was written by {describe(waited)}, which held it: adopting it as it is")
        lock.release()
        return None, 0
    lock.start_heartbeat()
    return lock, None


def main(argv: list[str] | None = None) -> int:
    try:
        args, suite, device, model, ckpt, splits, last, source = _prepare(argv)
    except _ArgError as e:
        print(str(e), file=sys.stderr)
        return 2
    lock, code = _adopt_or_lock(args)
    if lock is None:
        return code
    try:
        return _evaluate(args, suite, device, model, ckpt, splits, last, source)
    finally:
        lock.release()


def _evaluate(args, suite, device, model, ckpt, splits, last, source) -> int:
    try:
        doc = evaluation.evaluate_checkpoint(
            model, ckpt, splits.test.images, splits.test.labels, suite,
            suite_name=args.suite, checkpoint_path=ckpt.get("path", args.checkpoint), out=args.out, device=device,
            num_classes=splits.num_classes, landscape_out=args.landscape_out, last=last,
            extra={"foreign_model": source, "dataset": splits.name} if source is not None else None,
        )
    except OSError as e:  # e.g. the disk filled up while attacking: the error names the file
        print(f"trades-eval: error: {e}", file=sys.stderr)
        return 1
    except aa_batching.AABatchOutOfMemory as e:  # pinned batch too large for the free GPU memory
        print(f"trades-eval: error: {e}", file=sys.stderr)
        return 1
    if doc.get("planted"):  # a positive control: never to be read as a finding
        p = doc["planted"]
        print(f"trades-eval: PLANTED gradient masking: {p['description']} ({p['source']}); evaluated "
              f"{'behind it' if p['active'] else 'without it (its window ended before the last epoch)'}; "
              f"a positive control, not a finding")
    for label, d in (("", doc), (" last", doc.get("last"))):
        if d is None:
            continue
        nums = ", ".join(f"{k}={d[k]:.4f}" for k in evaluation.NUMBER_KEYS if isinstance(d[k], float))
        print(f"trades-eval: {args.suite}{label} (epoch {d.get('epoch')}) on {doc['n_examples']} examples "
              f"[{d['status']}] {nums} unstable={d['unstable']}"
              + (f" ({doc['wall_time_s']:.1f} s) -> {args.out}" if not label else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
