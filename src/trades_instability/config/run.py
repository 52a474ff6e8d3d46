"""Configuration of one training run: typed defaults that follow the paper, loaded from YAML/JSON.

Unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the key, so a typo
never silently falls back to a default. The workflow's JSON schema (workflow/schemas/) guards the
pipeline config; this guards a run config wherever it comes from.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("cifar10", "cifar100", "tinyimagenet", "synthetic")
METHODS = ("trades", "modified", "pgd_at", "alp")  # core/methods.py: one row each
VAL_SPLITS = ("test", "holdout")
PRECISIONS = ("fp32", "bf16")
BN_MODES = ("eval", "train")
INIT_DISTS = ("normal", "uniform", "eps_ball")
FIX_MODES = ("triggered", "always")
AWP_FORMS = ("official", "adr")
# the model registry is models.ARCHITECTURES (name -> builder, source); its names are repeated here so that
# validating a config does not import torch (core/models.py checks that both agree)
ARCHS = ("resnet18", "preact-resnet18", "wrn-34-10")
# planted gradient masking (a positive control): kind -> the PlantMaskingConfig keys it reads. The registry is
# core/masking.KINDS (source, transform, what the detectors read); repeated here so that validating a config does
# not import torch (core/masking.py checks that both agree)
PLANT_KINDS = {"quantize": ("levels",), "stochastic": ("shift", "noise_std")}
PLANT_NONE = "none"


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or impossible; the message names the key."""


class _Preset:
    """The default of every convention item (:data:`CONVENTIONS`): "the value of the run's convention".
    :meth:`RunConfig.__post_init__` replaces it, so a RunConfig never holds it, however it was built."""

    def __repr__(self) -> str:
        return "PRESET"

    def __copy__(self) -> _Preset:
        return self

    def __deepcopy__(self, memo) -> _Preset:
        return self


PRESET: Any = _Preset()


@dataclass
class SyntheticConfig:
    """Deterministic synthetic dataset (tests and smoke runs)."""

    num_classes: int = 10
    train_size: int = 512
    test_size: int = 256
    image_size: int = 32
    seed: int = 0


@dataclass
class AttackConfig:
    """L-inf threat model shared by the training adversary and PGD-10 validation."""

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    init_std: float = 0.001  # TPGD starts at x + init_std * noise
    # noise of the TPGD start: N(0, 1) (official TRADES) or U[0, 1) (ADR), times init_std; or eps_ball: uniform in
    # the eps-ball, PGD's start (Madry et al. 2018), init_std unused (the review's start variant)
    init_dist: str = PRESET
    bn_mode: str = PRESET  # BatchNorm mode while the training adversary runs (official: eval, ADR: train)


@dataclass
class AWPConfig:
    """Adversarial weight perturbation (Wu et al. 2020); ``form`` picks the code it follows."""

    enabled: bool = False
    form: str = PRESET  # adr: ADR's two-step (SAM-like) form; official: csdongxian/AWP's TRADES-AWP proxy form
    gamma: float = 0.005  # relative radius of the weight perturbation
    warmup: int = 0  # epochs of plain training before AWP starts
    proxy_lr: float = 0.01
    # Nesterov flag of the training optimiser in AWP runs; null: the run's own `nesterov` (ADR builds its AWP
    # optimiser on plain SGD, without Nesterov, and its non-AWP optimiser with Nesterov)
    nesterov: bool | None = PRESET


@dataclass
class FixConfig:
    """The paper's fix (Algorithm 1): Gaussian noise on the first batches after a high-FOSC epoch."""

    enabled: bool = False
    fosc_threshold: float = 0.1
    noise_std: float = 0.1
    noise_batches: int = 10
    # triggered: Algorithm 1 (noise after an epoch whose validation FOSC exceeds the threshold); always: the same
    # noise on the first noise_batches batches of every epoch (the review's always-on variant)
    mode: str = "triggered"


@dataclass
class PlantMaskingConfig:
    """Planted gradient masking (core/masking.py; README "Planted control"): ``kind: none`` trains normally.
    In a pipeline config it is set per seed by a setting's ``plant_masking:`` (config/pipeline.py), never in
    ``overrides:``."""

    kind: str = PLANT_NONE  # none | quantize | stochastic (PLANT_KINDS)
    levels: int = 8  # quantize: grey levels per channel
    shift: int = 2  # stochastic: largest random translation, pixels
    noise_std: float = 0.0  # stochastic: std of the Gaussian noise added at every forward, image units
    epochs: list[int] = field(default_factory=list)  # [a, b]: on in epochs a..b only; []: every epoch


@dataclass
class RunConfig:
    seed: int = 0
    # the three sources of randomness (SEED_SOURCES), each defaulting to `seed` when null; seeds() resolves them
    init_seed: int | None = None
    data_seed: int | None = None
    attack_seed: int | None = None
    # which code lineage the run follows; sets every key of CONVENTIONS[convention] that is not given (the
    # fields defaulting to PRESET), in __post_init__: the same whether built directly or from a mapping
    convention: str = "adr"
    # data
    dataset: str = "cifar100"
    data_root: str = "data"
    download: bool = True
    val_split: str = "test"  # test: the test set (the paper trains on all 50k images); holdout: last part of train
    val_size: int | None = None  # validation examples per epoch (None: the whole split)
    holdout_size: int = 1000
    augment: bool = True
    drop_last: bool = PRESET  # drop the last incomplete training batch (ADR: 195 steps at batch 256 on 50k)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # model
    arch: str = "resnet18"  # resnet18 | preact-resnet18 | wrn-34-10 (models.ARCHITECTURES)
    width: int = 64  # 64 = the published size of every arch; each layer has published x width/64 channels
    normalize_input: bool = PRESET  # the model subtracts the dataset mean / divides by std in forward (ADR)
    # optimisation
    method: str = "trades"  # trades: TPGD inner max; modified: PGD on CE w.r.t. labels (Table 6)
    beta: float = 3.0
    # ALP's logit-pairing weight lambda (method: alp): 0.5, train_lp_weight of the ALP command in
    # tensorflow/models research/adversarial_logit_pairing/README.md (Kannan et al. 2018)
    alp_lambda: float = 0.5
    epochs: int = 200
    batch_size: int = 256
    lr: float = 0.1
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    # how lr_milestones count epochs: 0 = completed epochs (ADR: the LR drops after m epochs, from 1-based
    # epoch m + 1), 1 = 1-based epochs (official TRADES: `if epoch >= m`, the LR drops at epoch m)
    lr_milestone_base: int = PRESET
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    attack: AttackConfig = field(default_factory=AttackConfig)
    joint_forward: bool = PRESET  # one forward pass for clean + adversarial (ADR); false: separate passes
    repeat_clean_forward: bool = PRESET  # official TRADES' third train-mode forward (clean again): BN stats only
    awp: AWPConfig = field(default_factory=AWPConfig)
    fix: FixConfig = field(default_factory=FixConfig)
    plant_masking: PlantMaskingConfig = field(default_factory=PlantMaskingConfig)  # a positive control
    # instrumentation
    log_batch_metrics: bool = False  # CE_norm, KL_norm, grad_cosine_similarity per step (batches.csv)
    snapshot_epochs: list[int] = field(default_factory=list)
    val_batch_size: int = 512
    val_random_start: bool = PRESET  # per-epoch validation PGD-10 starts uniformly in the eps-ball
    # TensorBoard event files of every epoch (and batch) in <out>/tensorboard/ (train/tensorboard_log.py)
    tensorboard: bool = True
    # execution
    precision: str = "fp32"  # bf16 autocast for training and validation attacks
    channels_last: bool = True  # NHWC where the backend allows it (memory_format.use_channels_last)
    compile: bool = False
    # torch.use_deterministic_algorithms + cudnn.benchmark off + CUBLAS_WORKSPACE_CONFIG: bit-exact resume on
    # a GPU too (README "Determinism"); slower, and an op without a deterministic kernel is an error
    deterministic: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        """Fill every convention item left at PRESET from ``convention`` (an explicit value wins)."""
        for key, value in convention_preset(self.convention).items():
            *parents, leaf = key.split(".")
            node = self
            for part in parents:
                node = getattr(node, part)
            if dataclasses.is_dataclass(node) and getattr(node, leaf) is PRESET:
                setattr(node, leaf, value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def seeds(self) -> dict[str, int]:
        """The resolved seed of each source of randomness (SEED_SOURCES): a null key is `seed`."""
        return {source: self.seed if getattr(self, f"{source}_seed") is None else getattr(self, f"{source}_seed")
                for source in SEED_SOURCES}


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved run-config mapping with its three seed sources filled in and ``seed`` dropped: ``seed`` drives
    nothing but their defaults, so two runs train the same model exactly when their identities are equal."""
    out = dict(config)
    seed = out.pop("seed")
    for source in SEED_SOURCES:
        if out.get(f"{source}_seed") is None:
            out[f"{source}_seed"] = seed
    return out


# Which generator each seed key drives (train/loop.py builds them; run.json records this table with the values).
SEED_SOURCES: dict[str, str] = {
    "init": "torch's global generator while the model is built: the weight initialisation",
    "data": "the CPU data generator: the shuffling of every epoch and the crop/flip augmentation",
    "attack": "the device generator (seeded attack_seed + 1): the training attack's random starts and the fix's "
              "noise; and the CPU generators of the validation PGD-10 starts (attack_seed * 100003 + epoch)",
}




# ----------------------------------------------------------------------------------------------
# Conventions: the two code lineages of TRADES, item by item (README "Fidelity choices").
# `convention: <name>` fills in every item the run config does not set itself; an explicit key wins.
# The items' fields above default to PRESET: this table is their one statement. The default convention is
# `adr` (the paper's lineage: Appendix B cites Wu et al. 2024 first, and Algorithm 1 uses ADR's trainer names).
# ----------------------------------------------------------------------------------------------
CONVENTION_NAMES = ("adr", "official_trades")
CONVENTIONS: dict[str, tuple[Any, Any]] = {
    # item                   adr      official   ADR source (yuyuwu5/ADR) | official source
    "attack.bn_mode":        ("train", "eval"),   # src/advTrainer.py: attack in train mode | trades.py: model.eval()
    "joint_forward":         (True,    False),    # src/advTrainer.py: model(cat([img, img_adv])) | trades.py: separate
    "repeat_clean_forward":  (False,   True),     # - | trades.py: model(x_natural) again inside the KL term
    "normalize_input":       (True,    False),    # src/model/resnet.py: (x - mean) / std in forward | inputs in [0, 1]
    "attack.init_dist":      ("uniform", "normal"),  # src/util/trades_attack.py: rand_like | trades.py: randn
    "drop_last":             (True,    False),    # src/train.py: DataLoader(drop_last=True) | train_trades_cifar10.py
    "val_random_start":      (True,    True),     # src/advTrainer.py: torchattacks.PGD | pgd_attack_cifar10.py --random
    "awp.form":              ("adr",   "official"),  # src/util/awp.py + advTrainer.py | csdongxian/AWP utils_awp.py
    # ADR: build_awp_optimizer wraps torch.optim.SGD without nesterov= (False) | official: the run's `nesterov`
    "awp.nesterov":          (False,   None),     # src/util/optimizer_scheduler.py | train_trades_cifar10.py (AWP)
    # ADR: timm MultiStepLRScheduler stepped per iteration, decay_t = m * steps_per_epoch | `if epoch >= m`
    # src/util/optimizer_scheduler.py + advTrainer.py | train_trades_cifar10.py
    "lr_milestone_base":     (0,       1),
}


def convention_preset(name: str) -> dict[str, Any]:
    """The items of convention ``name`` as ``{dotted key: value}``."""
    if not isinstance(name, str):
        raise ConfigError(f"config key 'convention' must be a string, got {name!r}")
    if name not in CONVENTION_NAMES:
        raise ConfigError(f"config key 'convention' must be one of {', '.join(CONVENTION_NAMES)}, got {name!r}")
    col = CONVENTION_NAMES.index(name)
    return {key: values[col] for key, values in CONVENTIONS.items()}


def _check_type(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _check_type(key, value, inner)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, prefix=f"{key}.")
    raise TypeError(tp)


def _from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; allowed here: {', '.join(names)}"
        )
    kwargs = {k: _check_type(prefix + k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def _require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config key '{key}' {msg}")


DEVICE_NAMES = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def image_units_problem(value: float, *, allow_zero: bool = False) -> str | None:
    """Why ``value`` is not a radius / step / noise std in [0, 1] image units (None when it is).

    Inputs are images in [0, 1]; a value above 1 is almost always one given in pixel units (8 for 8/255)."""
    low = "[0, 1]" if allow_zero else "(0, 1]"
    if value < 0 or (value == 0 and not allow_zero):
        return f"must be in {low} image units, got {value}"
    if value > 1:
        hint = f"; did you mean {value:g}/255 = {value / 255:.6g}?" if value <= 255 else ""
        return f"must be in {low} image units (inputs are in [0, 1]), got {value}{hint}"
    return None


def _require_image_units(value: float, key: str, *, allow_zero: bool = False) -> None:
    problem = image_units_problem(value, allow_zero=allow_zero)
    _require(problem is None, key, problem or "")


def _require_epoch_list(values: list[int], key: str, epochs: int) -> None:
    """Epoch lists (1-based) are strictly increasing and inside the run: 1..epochs."""
    _require(all(0 < m <= epochs for m in values), key, f"must lie in 1..epochs ({epochs}), got {values}")
    increasing = all(a < b for a, b in zip(values, values[1:], strict=False))  # neighbours: one pair fewer
    _require(increasing, key, f"must be strictly increasing, got {values}")


def validate(cfg: RunConfig) -> RunConfig:
    """Check values that types alone do not catch (each numeric key against its domain in the paper's
    setting); raise ConfigError naming the key."""
    for key, value, choices in [
        ("dataset", cfg.dataset, DATASETS), ("method", cfg.method, METHODS), ("val_split", cfg.val_split, VAL_SPLITS),
        ("precision", cfg.precision, PRECISIONS), ("convention", cfg.convention, CONVENTION_NAMES),
        ("attack.init_dist", cfg.attack.init_dist, INIT_DISTS), ("awp.form", cfg.awp.form, AWP_FORMS),
        ("attack.bn_mode", cfg.attack.bn_mode, BN_MODES), ("arch", cfg.arch, ARCHS),
        ("fix.mode", cfg.fix.mode, FIX_MODES),
        ("plant_masking.kind", cfg.plant_masking.kind, (PLANT_NONE, *PLANT_KINDS)),
    ]:
        _require(value in choices, key, f"must be one of {', '.join(choices)}, got {value!r}")
    # the official loop's repeated clean forward belongs to separate clean/adversarial forwards
    _require(not (cfg.joint_forward and cfg.repeat_clean_forward), "repeat_clean_forward",
             "must be false when joint_forward is true (the repeated clean forward of the official loop "
             "exists only with separate clean and adversarial forwards)")
    _require(bool(DEVICE_NAMES.match(cfg.device)), "device",
             f"must be auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    for key, value in (("seed", cfg.seed), ("init_seed", cfg.init_seed), ("data_seed", cfg.data_seed),
                       ("attack_seed", cfg.attack_seed)):
        _require(value is None or value >= 0, key, f"must be >= 0, got {value}")
    _require(cfg.synthetic.seed >= 0, "synthetic.seed", f"must be >= 0, got {cfg.synthetic.seed}")
    for key, value in [  # counts
        ("epochs", cfg.epochs), ("batch_size", cfg.batch_size), ("width", cfg.width),
        ("val_batch_size", cfg.val_batch_size), ("attack.steps", cfg.attack.steps),
        ("synthetic.num_classes", cfg.synthetic.num_classes), ("synthetic.train_size", cfg.synthetic.train_size),
        ("synthetic.test_size", cfg.synthetic.test_size), ("synthetic.image_size", cfg.synthetic.image_size),
        ("holdout_size", cfg.holdout_size),
    ]:
        _require(value > 0, key, f"must be > 0, got {value}")
    _require(cfg.synthetic.num_classes >= 2, "synthetic.num_classes", "must be >= 2")
    _require(cfg.val_size is None or cfg.val_size > 0, "val_size", f"must be > 0 or null, got {cfg.val_size}")
    # radii, steps and noise live in [0, 1] image units (Appendix B: eps 8/255, step 2/255; Algorithm 1: std 0.1)
    _require_image_units(cfg.attack.eps, "attack.eps")
    _require_image_units(cfg.attack.step_size, "attack.step_size")
    _require_image_units(cfg.attack.init_std, "attack.init_std", allow_zero=True)
    _require_image_units(cfg.fix.noise_std, "fix.noise_std", allow_zero=True)
    _require(0 < cfg.lr <= 1, "lr", f"must be in (0, 1] (the paper uses 0.01-0.1), got {cfg.lr}")
    _require(cfg.beta >= 0, "beta", f"must be >= 0, got {cfg.beta}")
    _require(cfg.alp_lambda >= 0, "alp_lambda", f"must be >= 0, got {cfg.alp_lambda}")
    _require(0 <= cfg.weight_decay < 1, "weight_decay", f"must be in [0, 1), got {cfg.weight_decay}")
    _require(0 <= cfg.momentum < 1, "momentum", f"must be in [0, 1), got {cfg.momentum}")
    _require(0 < cfg.lr_gamma <= 1, "lr_gamma", f"must be in (0, 1], got {cfg.lr_gamma}")
    _require(cfg.lr_milestone_base in (0, 1), "lr_milestone_base",
             f"must be 0 (milestones count completed epochs, ADR) or 1 (1-based epochs, official TRADES), "
             f"got {cfg.lr_milestone_base}")
    _require_epoch_list(cfg.lr_milestones, "lr_milestones", cfg.epochs)
    _require_epoch_list(cfg.snapshot_epochs, "snapshot_epochs", cfg.epochs)
    _require(0 < cfg.awp.gamma <= 1, "awp.gamma",
             f"must be in (0, 1] (relative weight radius, paper 0.005), got {cfg.awp.gamma}")
    _require(0 < cfg.awp.proxy_lr <= 1, "awp.proxy_lr", f"must be in (0, 1], got {cfg.awp.proxy_lr}")
    _require(0 <= cfg.awp.warmup < cfg.epochs, "awp.warmup",
             f"must be in 0..epochs-1 ({cfg.epochs - 1}) so that AWP runs at all, got {cfg.awp.warmup}")
    _require(cfg.fix.fosc_threshold > 0, "fix.fosc_threshold", f"must be > 0, got {cfg.fix.fosc_threshold}")
    _require(cfg.fix.noise_batches > 0, "fix.noise_batches",
             f"must be > 0 (batches noised after a high-FOSC epoch), got {cfg.fix.noise_batches}")
    _validate_plant(cfg.plant_masking, cfg.epochs)
    return cfg


def _validate_plant(p: PlantMaskingConfig, epochs: int) -> None:
    _require(p.levels >= 2, "plant_masking.levels", f"must be >= 2 (grey levels per channel), got {p.levels}")
    _require(p.shift >= 0, "plant_masking.shift", f"must be >= 0 (pixels), got {p.shift}")
    _require_image_units(p.noise_std, "plant_masking.noise_std", allow_zero=True)
    if p.epochs:
        _require(len(p.epochs) == 2 and 1 <= p.epochs[0] <= p.epochs[1] <= epochs, "plant_masking.epochs",
                 f"must be [] (every epoch) or [a, b] with 1 <= a <= b <= epochs ({epochs}), got {p.epochs}")
    if p.kind == "stochastic":
        _require(p.shift > 0 or p.noise_std > 0, "plant_masking.shift",
                 "or plant_masking.noise_std must be > 0 (kind stochastic with neither draws nothing)")


def from_dict(data: dict[str, Any]) -> RunConfig:
    """A checked RunConfig from a mapping (missing keys: the defaults, convention items: its convention's)."""
    return validate(_from_dict(RunConfig, data))


def read_yaml_mapping(path: str | Path, what: str, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """Read a YAML (or JSON) file that must hold a mapping; an empty file is ``{}``. Any problem raises
    ``error`` with one line naming ``what`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise error(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> RunConfig:
    """Read a run config (YAML or JSON; a missing key keeps the paper's default)."""
    data = read_yaml_mapping(path, "run config")
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
