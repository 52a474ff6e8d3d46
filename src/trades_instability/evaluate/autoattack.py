"""Thin wrapper around the official AutoAttack algorithms of the ``pyautoattack`` package.

Everything here calls ``pyautoattack.AutoAttack`` (keyword-only API, ``run_standard_evaluation``
returns ``(x_adv, y_adv)``); nothing is re-implemented. What the wrapper adds:

* one place that builds the AutoAttack object, with the *standard* parameters (1 restart each; the budget,
  :data:`STANDARD_SETTINGS`, is the one both :class:`AASettings` and the evaluation suite read);
* reduced settings for smoke runs (``apgd_iters``, ``fab_iters``, ``n_target_classes``,
  ``square_queries``). pyautoattack only honours such changes with ``version='custom'``, so whenever
  any value differs from the standard one (or the attack list is not the standard list) the object
  is built with ``version='custom'`` *and the standard per-attack settings copied over first*
  (``custom`` alone would keep APGD's 5 restarts); the returned version string says which;
* robust flags per example (``y_adv == y``), so callers can combine attacks example by example;
* pyautoattack's own reliability flags (its ``checks`` module: randomized or dynamic model, probability
  outputs, too many target classes, zero gradients in APGD, Square beating the white-box attacks). pyautoattack
  only logs them (``auto-attack`` logger, WARNING); :func:`collect_flags` records them by name, and
  :func:`run_individual` also runs the Square check on the components run one by one, which pyautoattack
  does only inside the ensemble.

Resuming a preempted AutoAttack: pyautoattack 0.2.0's ``run_standard_evaluation(state_path=...)`` cannot resume.
Its state file stores the attack set with ``json.dump(default=str)``, i.e. as the string ``"{'apgd-ce', ...}"``,
so reloading it always fails with "The state was created with a different set of attacks"; and with a restored
state ``y_adv`` is never assigned (it is created only in the branch that computes the clean accuracy). So no
state_path is passed; an evaluation killed inside AutoAttack reruns it from scratch (same seed, same numbers).
``tests/test_autoattack_eval.py`` fails as soon as an installed pyautoattack resumes, to say it can be wired.

pyautoattack names the attacks ``apgd-ce``, ``apgd-t`` (targeted APGD on the DLR loss), ``fab-t``
(targeted FAB) and ``square``; the paper's table columns for them are in
:data:`trades_instability.evaluate.suite.PAPER_COLUMNS`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

STANDARD_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-t", "fab-t", "square")
# The standard version's per-attack settings (pyautoattack AutoAttack._set_version('standard')).
STANDARD_SETTINGS = {"apgd_iters": 100, "fab_iters": 100, "n_target_classes": 9, "square_queries": 5000}
SUPPORTED_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


@dataclass(frozen=True)
class AASettings:
    """Attack budget of one AutoAttack run (defaults = the standard version)."""

    eps: float = 8 / 255
    seed: int = 0
    apgd_iters: int = STANDARD_SETTINGS["apgd_iters"]
    fab_iters: int = STANDARD_SETTINGS["fab_iters"]
    n_target_classes: int = STANDARD_SETTINGS["n_target_classes"]
    square_queries: int = STANDARD_SETTINGS["square_queries"]

    def is_standard(self) -> bool:
        return all(getattr(self, k) == v for k, v in STANDARD_SETTINGS.items())


AA_LOGGER = "auto-attack"  # the logger pyautoattack's checks write to
# flag name -> a piece of pyautoattack 0.2.0's message (checks.py); an unknown message is recorded as "other"
FLAG_MESSAGES: tuple[tuple[str, str], ...] = (
    ("square_beats_whitebox", "Square Attack has decreased the robust accuracy"),  # check_square_sr
    ("zero_gradients", "points with zero gradient"),  # check_zero_gradients (APGD, every run)
    ("randomized", "randomized defense"),  # check_randomized: outputs differ between 5 forwards
    ("dynamic", "dynamic defense"),  # check_dynamic: the forward pass computes gradients
    ("probability_output", "probability distribution"),  # check_range_output: softmax outputs, not logits
    ("n_classes", "classes"),  # check_n_classes: DLR / targeted attacks with too few classes
)


def flag_name(message: str) -> str:
    return next((name for name, piece in FLAG_MESSAGES if piece in message), "other")


@dataclass
class FlagCollector:
    """pyautoattack's flags raised while :func:`collect_flags` was active: how often each was raised and its
    first message."""

    counts: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)

    def add(self, message: str) -> bool:
        """Record one message; True when it is the first of its flag."""
        name = flag_name(message)
        first = name not in self.counts
        self.counts[name] = self.counts.get(name, 0) + 1
        self.messages.setdefault(name, message)
        return first


class _Handler(logging.Handler):
    def __init__(self, collector: FlagCollector, log):
        super().__init__(level=logging.WARNING)
        self.collector, self.log = collector, log

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if self.collector.add(msg):  # each flag once in the log (zero gradients can come per batch and target)
            self.log(f"WARNING: pyautoattack flag {flag_name(msg)}: {msg}")


@contextlib.contextmanager
def collect_flags(log=lambda msg: None):
    """Record pyautoattack's check warnings (``auto-attack`` logger) in a :class:`FlagCollector`; the first
    message of each flag also goes to ``log``."""
    collector = FlagCollector()
    logger = logging.getLogger(AA_LOGGER)
    handler = _Handler(collector, log)
    logger.addHandler(handler)
    try:
        yield collector
    finally:
        logger.removeHandler(handler)


def _set_apgd_iters(apgd, n_iter: int) -> None:
    """Change APGD's iteration budget after construction.

    APGD derives its step-size checkpoints (n_iter_2, n_iter_min, size_decr) from n_iter in
    ``__init__``; setting only ``n_iter`` would keep the 100-iteration schedule, so they are
    recomputed with the same formulas."""
    apgd.n_iter = n_iter
    apgd.n_iter_orig = n_iter
    apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
    apgd.n_iter_min = max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)


def make_autoattack(
    model: nn.Module,
    *,
    attacks: list[str] | tuple[str, ...] = STANDARD_ATTACKS,
    settings: AASettings = AASettings(),
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
):
    """Build a quiet ``pyautoattack.AutoAttack``; returns ``(adversary, version)``.

    ``version`` is ``"standard"`` when the attack list and all settings are the standard ones,
    otherwise ``"custom"`` (the standard per-attack settings are copied, then the given ones applied).
    With fewer than 10 classes the number of target classes is capped at ``num_classes - 1``
    (which makes the run ``custom``)."""
    from pyautoattack import AutoAttack

    attacks = list(attacks)
    unknown = [a for a in attacks if a not in SUPPORTED_ATTACKS]
    if unknown:
        raise ValueError(f"unknown AutoAttack attack(s) {unknown}; allowed: {', '.join(SUPPORTED_ATTACKS)}")
    n_target = settings.n_target_classes
    if num_classes is not None:
        if num_classes < 4 and any(a in ("apgd-t", "apgd-dlr") for a in attacks):
            raise ValueError(f"APGD with the DLR loss needs at least 4 classes, the model has {num_classes}")
        n_target = min(n_target, num_classes - 1)
    # standard: the standard attacks and budget, and the target classes not capped by the model's classes
    standard = attacks == list(STANDARD_ATTACKS) and settings.is_standard() and n_target == settings.n_target_classes
    if standard:
        aa = AutoAttack(model, device=device, eps=settings.eps, norm="Linf", seed=settings.seed, version="standard")
    else:
        aa = AutoAttack(
            model, attacks=attacks, device=device, eps=settings.eps, norm="Linf", seed=settings.seed, version="custom"
        )
        # the standard version's settings (see AutoAttack._set_version), then the requested budget
        aa.apgd.n_restarts = 1
        aa.apgd_targeted.n_restarts = 1
        aa.fab.n_restarts = 1
        _set_apgd_iters(aa.apgd, settings.apgd_iters)
        _set_apgd_iters(aa.apgd_targeted, settings.apgd_iters)
        aa.apgd_targeted.n_target_classes = n_target
        aa.fab.n_iter = settings.fab_iters
        aa.fab.n_target_classes = n_target
        aa.square.n_queries = settings.square_queries
    # progress messages off; pyautoattack's own check warnings (e.g. "Square decreased the robust
    # accuracy", a sign of gradient masking) still reach the 'auto-attack' logger (collect_flags records them).
    aa.verbose = False
    logging.getLogger(AA_LOGGER).setLevel(logging.WARNING)
    return aa, ("standard" if standard else "custom")


def run_ensemble(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    attacks: list[str] | tuple[str, ...] = STANDARD_ATTACKS,
    settings: AASettings = AASettings(),
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
) -> tuple[torch.Tensor, str]:
    """AutoAttack ensemble (``run_standard_evaluation``); returns (robust flags (N,) bool on CPU, version)."""
    aa, version = make_autoattack(model, attacks=attacks, settings=settings, device=device, num_classes=num_classes)
    _, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return (y_adv == y).cpu(), version


def run_individual(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    attacks: list[str] | tuple[str, ...] = STANDARD_ATTACKS,
    settings: AASettings = AASettings(),
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
) -> tuple[dict[str, torch.Tensor], str]:
    """Each attack on its own (``run_standard_evaluation_individual``); returns ({attack: robust flags}, version).

    Square alone is ``run_individual(..., attacks=["square"])`` (version custom). With Square and another
    attack, pyautoattack's Square check runs on the individual accuracies (it runs only in the ensemble
    otherwise): a flag when Square alone is more than 0.2 points below the best white-box attack alone."""
    from pyautoattack import checks

    aa, version = make_autoattack(model, attacks=attacks, settings=settings, device=device, num_classes=num_classes)
    adv = aa.run_standard_evaluation_individual(x, y, batch_size=batch_size)
    flags = {name: (y_adv == y).cpu() for name, (_, y_adv) in adv.items()}
    if "square" in flags and len(flags) > 1:
        with torch.no_grad():
            clean = torch.cat([model(x[s : s + batch_size]).argmax(1) == y[s : s + batch_size]
                               for s in range(0, x.shape[0], batch_size)])
        acc = {"clean": float(clean.float().mean()), **{k: float(v.float().mean()) for k, v in flags.items()}}
        checks.check_square_sr(acc, logger=logging.getLogger(AA_LOGGER))
    return flags, version
