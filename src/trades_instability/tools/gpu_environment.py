"""gpu-check's step a, the environment: what torch, CUDA, the driver and cuDNN are, which GPU this is, and which
of this repository's locks fits the driver; also the one line said when there is no usable GPU
(:mod:`trades_instability.tools.gpu_check`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import torch

import trades_instability

# NVIDIA, "CUDA Compatibility", Minor Version Compatibility, Table 1: the oldest driver branch that runs any
# toolkit of a CUDA major release.
MIN_DRIVER_FOR_CUDA_MAJOR = {11: 450, 12: 525, 13: 580}


def _run(cmd: list[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def nvidia_smi_gpus() -> list[dict[str, Any]] | None:
    """The GPUs nvidia-smi sees (index, name, driver, memory MiB, compute capability); None without nvidia-smi.
    ``compute_cap`` is a newer query field: asked for first, then without it."""
    if shutil.which("nvidia-smi") is None:
        return None
    for fields in (("index", "name", "driver_version", "memory.total", "compute_cap"),
                   ("index", "name", "driver_version", "memory.total")):
        out = _run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"])
        if out is not None:
            rows = [dict(zip(fields, (c.strip() for c in line.split(",")), strict=False))
                    for line in out.splitlines() if line.strip()]
            return [{"index": r["index"], "name": r["name"], "driver": r["driver_version"],
                     "memory_mib": r["memory.total"], "compute_cap": r.get("compute_cap")} for r in rows]
    return []


def driver_major(driver: str | None) -> int | None:
    m = re.match(r"(\d+)", driver or "")
    return int(m.group(1)) if m else None


_LOCK_CUDA = re.compile(r"^nvidia-cuda-runtime(?:-cu(\d+))?==(\d+)\.", re.MULTILINE)
_LOCK_TORCH = re.compile(r"^torch==([^\s\\]+)", re.MULTILINE)


def repo_locks() -> list[dict[str, Any]]:
    """This repository's locks (envs/requirements*.lock beside src/): path, torch pin, CUDA major of its
    nvidia-cuda-runtime pin, the oldest driver branch that runs it. Empty when the library is not run from
    a clone (e.g. installed from a wheel)."""
    envs = Path(trades_instability.__file__).resolve().parents[2] / "envs"
    out = []
    for path in sorted(envs.glob("requirements*.lock")):
        text = path.read_text()
        cuda, torch_pin = _LOCK_CUDA.search(text), _LOCK_TORCH.search(text)
        if not (cuda and torch_pin):
            continue
        major = int(cuda.group(1) or cuda.group(2))
        out.append({"lock": f"envs/{path.name}", "torch": torch_pin.group(1), "cuda_major": major,
                    "min_driver": MIN_DRIVER_FOR_CUDA_MAJOR.get(major)})
    return out


def matching_lock(major: int | None, locks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The lock with the newest CUDA that a driver of branch ``major`` runs."""
    fits = [lk for lk in locks if major is not None and lk["min_driver"] is not None and major >= lk["min_driver"]]
    return max(fits, key=lambda lk: lk["cuda_major"]) if fits else None


def installed_lock(locks: list[dict[str, Any]]) -> str | None:
    base = torch.__version__.split("+")[0]
    return next((lk["lock"] for lk in locks if lk["torch"] == base), None)


def cuda_available() -> bool:
    with warnings.catch_warnings():  # "the NVIDIA driver on your system is too old": said in our own line
        warnings.simplefilter("ignore")
        return torch.cuda.is_available()


def no_gpu_line() -> str:
    """Why there is no usable GPU, in one line, with what to do."""
    gpus = nvidia_smi_gpus()
    built = f"torch {torch.__version__}" + (f" (CUDA {torch.version.cuda})" if torch.version.cuda
                                            else " (CPU-only build)")
    if not gpus:
        seen = "nvidia-smi not found" if gpus is None else "nvidia-smi lists no GPU"
        return (f"gpu-check: no usable GPU here ({built}: torch.cuda.is_available() is False; {seen}); run it on a "
                "GPU node, or add --tiny for the toy-size run on the CPU")
    g = gpus[0]
    major = driver_major(g["driver"])
    locks = repo_locks()
    want = matching_lock(major, locks)
    if torch.version.cuda is None:
        why = "it is a CPU-only build"
    else:
        need = MIN_DRIVER_FOR_CUDA_MAJOR.get(int(torch.version.cuda.split(".")[0]))
        why = (f"built for CUDA {torch.version.cuda}, which needs driver >= {need}" if need and major and major < need
               else "torch.cuda.is_available() is False")
    if want is not None:
        fix = (f"install {want['lock']} (torch {want['torch']}, CUDA {want['cuda_major']}, driver >= "
               f"{want['min_driver']}) in a new venv: pip install --require-hashes --no-deps -r {want['lock']}")
    elif locks:
        fix = ("no lock of this repository runs on it: upgrade the driver to >= "
               f"{min(lk['min_driver'] for lk in locks if lk['min_driver'])}")
    else:
        fix = "install a torch built for a CUDA this driver supports"
    return (f"gpu-check: nvidia-smi shows {g['name']} with driver {g['driver']}, but {built} cannot use it "
            f"({why}); {fix}")


def cudnn_version() -> str | None:
    """torch.backends.cudnn.version() as major.minor.patch: cuDNN 9 encodes it as 10000 major + 100 minor + patch
    (92400 is 9.24.0), cuDNN 8 and older as 1000 major + 100 minor + patch (8906 is 8.9.6)."""
    v = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if v is None:
        return None
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}" if v >= 90000 else f"{v // 1000}.{v // 100 % 10}.{v % 100}"


def environment(device: torch.device) -> dict[str, Any]:
    from trades_instability.runtime import device_description, library_versions

    locks = repo_locks()
    env: dict[str, Any] = {"versions": library_versions(), "torch": torch.__version__,
                           "cuda_runtime": torch.version.cuda,
                           "cudnn": cudnn_version(),
                           "device": device_description(device), "locks": locks,
                           "installed_lock": installed_lock(locks)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpus = nvidia_smi_gpus() or []
        # one driver per node; nvidia-smi numbers GPUs ignoring CUDA_VISIBLE_DEVICES, so torch's index is no key
        smi = gpus[0] if gpus else {}
        major = driver_major(smi.get("driver"))
        want = matching_lock(major, locks)
        env.update(gpu=props.name, memory_gib=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                   multiprocessors=props.multi_processor_count, bf16=torch.cuda.is_bf16_supported(),
                   driver=smi.get("driver"), nvidia_smi=gpus, gpu_count=torch.cuda.device_count(),
                   matching_lock=want["lock"] if want else None)
    else:
        env.update(gpu=None, memory_gib=None, capability=None, bf16=True, driver=None, matching_lock=None)
    return env


def environment_line(env: dict[str, Any]) -> str:
    if env["gpu"] is None:
        return (f"{env['device']}; torch {env['torch']}; no GPU (--tiny); installed lock "
                f"{env['installed_lock'] or 'none of envs/'}")
    bf16 = "yes" if env["bf16"] else "no"
    return (f"{env['gpu']} ({env['memory_gib']:.0f} GiB, sm {env['capability']}, bf16 {bf16}), "
            f"driver {env['driver']}; torch {env['torch']}, CUDA {env['cuda_runtime']}, cuDNN {env['cudnn']}; "
            f"lock for this driver: {env['matching_lock'] or '?'}, "
            f"installed: {env['installed_lock'] or 'none of envs/'}")
