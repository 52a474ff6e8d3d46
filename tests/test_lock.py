"""The locked environment agrees with pyproject.toml and the conda env (envs/update-lock.sh writes both files).

CI and the README install exactly envs/requirements.lock; these checks fail when someone edits a range in
pyproject.toml, or a pin in one file, without regenerating the others."""

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


def _lock() -> dict[str, tuple[Version, list[str]]]:
    """{name: (version, hashes)} of envs/requirements.lock."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    name = None
    for line in (ROOT / "envs" / "requirements.lock").read_text().splitlines():
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


def test_every_pyproject_requirement_is_locked_within_its_range():
    lock = _lock()
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is in pyproject.toml but not in envs/requirements.lock: run envs/update-lock.sh"
        assert req.specifier.contains(lock[name][0], prereleases=True), (
            f"pyproject.toml asks {req}, the lock has {lock[name][0]}: run envs/update-lock.sh"
        )


def test_every_locked_package_has_a_sha256_hash():
    for name, (version, hashes) in _lock().items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}=={version} has no hash"


def test_the_lock_is_the_whole_environment():
    """Every locked package is installed at its locked version (a lock that is not what runs proves nothing).
    Skipped outside an environment installed from the lock (e.g. a library user's own venv)."""
    from importlib.metadata import PackageNotFoundError, version

    lock = _lock()
    try:
        installed_torch = Version(version("torch"))
    except PackageNotFoundError:
        pytest.skip("torch is not installed")
    if installed_torch.base_version != lock["torch"][0].base_version:
        pytest.skip(f"not the locked environment (torch {installed_torch}, lock {lock['torch'][0]})")
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
    assert not wrong, f"installed packages differ from envs/requirements.lock: {wrong}"


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
