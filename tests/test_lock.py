"""The locked environments agree with pyproject.toml and the conda env (envs/update-lock.sh writes them all).

CI and the README install exactly envs/requirements.lock (torch with CUDA 13 libraries); envs/requirements-cu12.lock
is the same environment with the newest torch/torchvision built against CUDA 12 (drivers older than R580). These
checks fail when someone edits a range in pyproject.toml, or a pin in one file, without regenerating the others."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


LOCKS = ("requirements.lock", "requirements-cu12.lock")
# what the CUDA 12 lock may pin differently from the main lock: torch, torchvision and the CUDA stack they pull in
TORCH_STACK = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")


def _lock(file: str = "requirements.lock") -> dict[str, tuple[Version, list[str]]]:
    """{name: (version, hashes)} of envs/<file>."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    name = None
    for line in (ROOT / "envs" / file).read_text().splitlines():
        m = _PIN.match(line)
        if m:
            name = canonicalize_name(m.group(1))
            assert name not in entries, f"{name} is locked twice"
            entries[name] = (Version(m.group(2)), [])
        elif "--hash=sha256:" in line:
            assert name is not None, "a hash line before any pin"
            entries[name][1].append(line.split("--hash=sha256:")[1].split()[0])
        else:
            assert not line.strip() or line.startswith("#"), f"unexpected lock line {line!r}"
    return entries


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in ("workflow", "test"):  # what the README's install and CI get
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def _conda_pins() -> dict[str, Version]:
    env = yaml.safe_load((ROOT / "envs" / "trades.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {}
    for spec in pip:
        m = _PIN.match(spec)
        assert m, f"envs/trades.yaml: {spec!r} is not pinned with =="
        pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


@pytest.mark.parametrize("file", LOCKS)
def test_every_pyproject_requirement_is_locked_within_its_range(file):
    lock = _lock(file)
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is in pyproject.toml but not in envs/{file}: run envs/update-lock.sh"
        assert req.specifier.contains(lock[name][0], prereleases=True), (
            f"pyproject.toml asks {req}, envs/{file} has {lock[name][0]}: run envs/update-lock.sh"
        )


@pytest.mark.parametrize("file", LOCKS)
def test_every_locked_package_has_a_sha256_hash(file):
    for name, (version, hashes) in _lock(file).items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}=={version} has no hash"


def _cuda_major(lock: dict[str, tuple[Version, list[str]]]) -> int:
    """The CUDA major release a lock's torch is built against, from its nvidia CUDA runtime pin (the wheel's
    Requires-Dist: nvidia-cuda-runtime-cu12 for CUDA 12, nvidia-cuda-runtime 13.x for CUDA 13)."""
    runtime = [(n, v) for n, (v, _) in lock.items() if n.startswith("nvidia-cuda-runtime")]
    assert len(runtime) == 1, f"expected one nvidia-cuda-runtime pin, got {runtime}"
    name, version = runtime[0]
    suffix = re.search(r"-cu(\d+)$", name)
    return int(suffix.group(1)) if suffix else version.major


def test_the_cuda12_lock_is_the_main_lock_with_a_cuda12_torch():
    """Every package outside torch's CUDA stack at the main lock's version, and that stack CUDA 12 throughout."""
    main, cu12 = _lock(), _lock("requirements-cu12.lock")
    assert _cuda_major(main) == 13 and _cuda_major(cu12) == 12
    assert not [n for n in cu12 if n.startswith("nvidia-") and n.endswith("-cu13")]
    assert all(v.major == 12 for n, (v, _) in cu12.items() if n.startswith("nvidia-cuda-"))
    moved = {n: (str(main[n][0]) if n in main else None, str(v)) for n, (v, _) in cu12.items()
             if (n not in main or main[n][0] != v) and not TORCH_STACK.match(n)}
    assert not moved, f"packages the CUDA 12 lock moves off the main lock's version: {moved}"
    missing = [n for n in main if n not in cu12 and not TORCH_STACK.match(n)]
    assert not missing, f"packages of the main lock missing from the CUDA 12 lock: {missing}"
    assert cu12["torch"][0] < main["torch"][0]  # the newest torch built against CUDA 12 is older than the main one


def test_the_lock_is_the_whole_environment():
    """Every package of the lock whose torch is the installed one is installed at its locked version (a lock that
    is not what runs proves nothing). Skipped outside an environment installed from a lock (e.g. a library user's
    own venv)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed_torch = Version(version("torch"))
    except PackageNotFoundError:
        pytest.skip("torch is not installed")
    torch_pins = {f: _lock(f)["torch"][0] for f in LOCKS}
    file = next((f for f, v in torch_pins.items() if v.base_version == installed_torch.base_version), None)
    if file is None:
        pytest.skip(f"not a locked environment (torch {installed_torch}, the locks: {torch_pins})")
    lock = _lock(file)
    wrong = {}
    for name, (want, _) in lock.items():
        try:
            have = Version(version(name))
        except PackageNotFoundError:
            wrong[name] = "missing"
            continue
        # torch's own wheels carry a local label (+cu130) that the registry's version does not
        if have != want and Version(have.base_version) != want:
            wrong[name] = f"{have} (lock {want})"
    assert not wrong, f"installed packages differ from envs/{file}: {wrong}"


def test_conda_env_pins_the_locked_versions():
    lock, conda = _lock(), _conda_pins()
    for name, version in conda.items():
        assert name in lock and lock[name][0] == version, (
            f"envs/trades.yaml pins {name}=={version}, the lock has "
            f"{lock[name][0] if name in lock else 'nothing'}: run envs/update-lock.sh"
        )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in map(Requirement, project["dependencies"]):  # the jobs' env holds the library's dependencies
        assert canonicalize_name(req.name) in conda, f"envs/trades.yaml lacks {req.name}: run envs/update-lock.sh"
