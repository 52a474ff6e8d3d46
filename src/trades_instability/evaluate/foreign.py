"""Models this project did not train, for ``trades-eval``: a plain state_dict or a RobustBench model.

* A state_dict file (``torch.save(model.state_dict(), path)``, or a dict holding it under ``state_dict``
  / ``model``) of one of :data:`models.ARCHITECTURES`, with the normalisation the model was trained
  with declared (``--normalize``): the model takes [0, 1] images and standardises them itself. Keys of
  nn.DataParallel (``module.``) and TRADES' unused ``sub_block1`` are adapted
  (:func:`models.adapt_foreign_state_dict`); it is loaded with ``weights_only=True``.
* A RobustBench model name, loaded with ``robustbench.utils.load_model`` (optional extra
  ``robustbench``), cached under ``{data_root}/robustbench/{dataset}/Linf/{name}.pt``: a file already
  there is used without network. RobustBench models take [0, 1] images and normalise themselves.

Every problem is a :class:`ForeignModelError` with one line naming the file or name and the fix.
"""

from __future__ import annotations

from pathlib import Path

from trades_instability.core.models import ARCH_NAMES, DATASET_STATS, adapt_foreign_state_dict, build_model

ROBUSTBENCH_DATASETS = ("cifar10", "cifar100")
ROBUSTBENCH_THREAT_MODEL = "Linf"  # the paper's threat model (eps 8/255)


class ForeignModelError(ValueError):
    """A foreign model cannot be built or loaded; the message names it and the fix."""


def parse_normalize(text: str) -> tuple[list[float], list[float]] | None:
    """``--normalize``: ``none``; a dataset name (its statistics, models.DATASET_STATS); ``mean,std``
    (one value for every channel); or ``m1,m2,m3,s1,s2,s3`` (per channel)."""
    text = text.strip()
    if text.lower() == "none":
        return None
    if text in DATASET_STATS:
        mean, std = DATASET_STATS[text]
        return list(mean), list(std)
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 6) or any(s <= 0 for s in values[len(values) // 2:]):
        raise ForeignModelError(
            f"--normalize {text!r}: give none, a dataset name ({', '.join(DATASET_STATS)}), mean,std or "
            "m1,m2,m3,s1,s2,s3 (std > 0), the normalisation the model was trained with")
    half = len(values) // 2
    mean, std = values[:half], values[half:]
    return (mean * 3, std * 3) if half == 1 else (mean, std)


def load_state_dict_model(path: str | Path, arch: str, num_classes: int, width: int = 64,
                          normalize: tuple[list[float], list[float]] | None = None):
    """Build ``arch`` and load the plain state_dict file ``path`` into it; returns the model (eval mode)."""
    import torch

    if arch not in ARCH_NAMES:
        raise ForeignModelError(f"--arch {arch!r} is not one of {', '.join(ARCH_NAMES)}")
    path = Path(path)
    if not path.is_file():
        raise ForeignModelError(f"state_dict {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, pickle of foreign objects ...
        raise ForeignModelError(f"state_dict {path} cannot be read with weights_only=True "
                                f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})") from None
    for key in ("state_dict", "model"):  # common wrappers of a state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ForeignModelError(f"state_dict {path} holds no mapping of parameter names to tensors")
    model = build_model(arch, num_classes=num_classes, width=width, normalize=normalize)
    try:
        model.load_state_dict(adapt_foreign_state_dict(state))
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise ForeignModelError(f"state_dict {path} does not fit --arch {arch} --num-classes {num_classes} "
                                f"--width {width}: {detail}") from None
    return model.eval()


def robustbench_cache_file(cache_dir: str | Path, name: str, dataset: str) -> Path:
    """Where robustbench's load_model keeps (and first looks for) model ``name``."""
    return Path(cache_dir) / dataset / ROBUSTBENCH_THREAT_MODEL / f"{name}.pt"


def _alias_autoattack() -> None:
    """robustbench 1.1.1 imports the official AutoAttack as ``autoattack`` (its git install's name), but its
    PyPI requirement ``pyautoattack`` installs the same code as ``pyautoattack``: register that module under the
    name robustbench imports (only where no ``autoattack`` is installed)."""
    import importlib.util
    import sys

    if "autoattack" in sys.modules or importlib.util.find_spec("autoattack") is not None:
        return
    try:
        import pyautoattack
        import pyautoattack.state
    except ImportError:
        return
    sys.modules["autoattack"] = pyautoattack
    sys.modules["autoattack.state"] = pyautoattack.state


def require_robustbench():
    """robustbench.utils.load_model, or ForeignModelError saying how to install it."""
    _alias_autoattack()
    try:
        from robustbench.utils import load_model
    except ImportError as e:
        raise ForeignModelError(
            f"--robustbench needs the optional package robustbench ({e}); install the extra: "
            "pip install -e '.[robustbench]'") from None
    return load_model


def load_robustbench_model(name: str, dataset: str, cache_dir: str | Path):
    """RobustBench's ``load_model(name)`` for the L-inf threat model, cached under ``cache_dir``."""
    if dataset not in ROBUSTBENCH_DATASETS:
        raise ForeignModelError(f"--robustbench needs --dataset {' or '.join(ROBUSTBENCH_DATASETS)}, got {dataset!r}")
    load_model = require_robustbench()
    cached = robustbench_cache_file(cache_dir, name, dataset)
    try:
        model = load_model(model_name=name, model_dir=str(cache_dir), dataset=dataset,
                           threat_model=ROBUSTBENCH_THREAT_MODEL)
    except KeyError:
        raise ForeignModelError(f"--robustbench {name!r} is not a RobustBench {dataset} "
                                f"{ROBUSTBENCH_THREAT_MODEL} model name") from None
    except Exception as e:  # no network: requests / gdown raise their own types
        first = (str(e).splitlines() or [""])[0][:200]
        where = "is cached" if cached.is_file() else f"is not cached at {cached} and could not be downloaded (offline?)"
        raise ForeignModelError(f"RobustBench model {name!r} {where}: {type(e).__name__}: {first}; "
                                f"place the file at {cached} to use it offline") from None
    return model.eval()


__all__ = ["ForeignModelError", "parse_normalize", "load_state_dict_model", "load_robustbench_model",
           "robustbench_cache_file", "require_robustbench", "ROBUSTBENCH_DATASETS"]
