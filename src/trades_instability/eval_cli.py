"""``trades-eval``: evaluate one checkpoint with one suite and write its JSON (and landscape .npz).

    trades-eval --checkpoint C --suite NAME --out J [--suites FILE.yaml] [--data-root D]
                [--device auto|cpu|cuda] [--landscape-out L.npz] [--n-examples N]

The test set is loaded as the checkpoint's stored run config says (dataset, data_root, synthetic.*),
with ``--data-root`` overriding the folder. Every argument problem (missing/truncated/foreign
checkpoint, weights that do not fit the declared architecture, unknown suite or attack, missing
dataset, an output that cannot be written) is reported as ONE line on stderr with exit code 2, before
any attack runs; a write that fails later (full disk) is one line naming the file, exit code 1, and so is
AutoAttack running out of GPU memory at a pinned ``aa_batch_size`` (evaluation.AABatchOutOfMemory). A diverged
model (non-finite logits) is not an error: its JSON says ``status: "diverged"`` (exit 0).
"""

from __future__ import annotations

import argparse
import sys

from . import artifacts, evaluation
from .config import ConfigError, from_dict


class _ArgError(Exception):
    pass


class CheckpointInputError(ValueError):
    """A checkpoint or its test set cannot be used; the message names the file and the problem."""


def load_checkpoint_with_data(checkpoint, device, data_root: str | None = None):
    """Load a trades-train checkpoint and the test set its stored run config names (``data_root``
    overrides the folder); returns ``(model, ckpt, splits)``. Every problem (missing, truncated or
    foreign file, weights that do not fit, a config that disagrees with the weights, a missing dataset,
    a class count that differs) is one :class:`CheckpointInputError`, raised before any attack runs."""
    from . import data

    try:
        model, ckpt = artifacts.load_model(checkpoint, device)
    except (artifacts.CheckpointError, ValueError, KeyError, TypeError) as e:
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
        splits = data.load_splits(cfg)
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="trades-eval", description="Evaluate a trades_instability checkpoint (clean, PGD-10, Square, AutoAttack).")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by trades-train")
    p.add_argument("--suite", required=True, help="suite name (builtin: cheap, aa, full; or one from --suites)")
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--suites", default=None, help="YAML file of suites {name: {attacks: [...], n_examples, ...}}")
    p.add_argument("--data-root", default=None, help="override the data_root stored in the checkpoint's config")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--landscape-out", default=None, help="also write the Figure 1 loss landscape (.npz)")
    p.add_argument("--n-examples", type=int, default=None, help="override the suite's n_examples (first N test examples)")
    return p


def _prepare(argv):
    """Parse and check everything that can be wrong with the arguments; load model and data."""
    args = build_parser().parse_args(argv)
    for path, what in ((args.out, "--out"), (args.landscape_out, "--landscape-out")):
        if path is not None:  # before any attack runs: a bad output must not cost the evaluation
            try:
                artifacts.check_writable_output(path, what)
            except OSError as e:
                raise _ArgError(f"trades-eval: {e}") from None
    try:
        suites = evaluation.load_suites(args.suites)
        suite = evaluation.get_suite(suites, args.suite)
        if args.n_examples is not None:
            suite = evaluation.suite_from_dict(args.suite, {"n_examples": args.n_examples}, base=suite)
    except evaluation.SuiteError as e:
        raise _ArgError(f"trades-eval: {e}") from None
    try:
        device = evaluation.resolve_device(args.device)
    except RuntimeError as e:
        raise _ArgError(f"trades-eval: {e}") from None
    try:
        model, ckpt, splits = load_checkpoint_with_data(args.checkpoint, device, args.data_root)
    except CheckpointInputError as e:
        raise _ArgError(f"trades-eval: {e}") from None
    if "autoattack_individual" in suite.attacks or "autoattack" in suite.attacks:
        if splits.num_classes < 4:
            raise _ArgError(f"trades-eval: AutoAttack's DLR attacks need at least 4 classes, {splits.name} has {splits.num_classes}")
    return args, suite, device, model, ckpt, splits


def main(argv: list[str] | None = None) -> int:
    try:
        args, suite, device, model, ckpt, splits = _prepare(argv)
    except _ArgError as e:
        print(str(e), file=sys.stderr)
        return 2
    try:
        doc = evaluation.evaluate_checkpoint(
            model, ckpt, splits.test.images, splits.test.labels, suite,
            suite_name=args.suite, checkpoint_path=args.checkpoint, out=args.out, device=device,
            num_classes=splits.num_classes, landscape_out=args.landscape_out,
        )
    except OSError as e:  # e.g. the disk filled up while attacking: the error names the file
        print(f"trades-eval: error: {e}", file=sys.stderr)
        return 1
    except evaluation.AABatchOutOfMemory as e:  # pinned batch too large for the free GPU memory
        print(f"trades-eval: error: {e}", file=sys.stderr)
        return 1
    nums = ", ".join(f"{k}={doc[k]:.4f}" for k in evaluation.NUMBER_KEYS if isinstance(doc[k], float))
    print(f"trades-eval: {args.suite} on {doc['n_examples']} examples [{doc['status']}] {nums} "
          f"unstable={doc['unstable']} ({doc['wall_time_s']:.1f} s) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
