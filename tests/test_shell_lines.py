"""The rules' shell lines are stable (issue 29): they call the library only through its command line,
``python -m trades_instability VERB`` with a verb of src/trades_instability/__main__.py, so moving a module
never changes a rule's shell text (a rerun trigger); the job-environment prefix is written once, in
common.smk; the workflow scripts share one helper (workflow/scripts/script_job.py) for logging and error exit."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
SCRIPTS = sorted(p for p in (ROOT / "workflow" / "scripts").glob("*.py") if p.name != "script_job.py")


def verbs() -> set[str]:
    r = subprocess.run([sys.executable, "-m", "trades_instability"], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    m = re.search(r"python -m trades_instability \{([^}]*)\}", r.stdout)
    assert r.returncode == 2 and m, r.stdout + r.stderr
    return set(m.group(1).split(","))


def test_rules_call_the_library_only_through_its_verbs():
    known = verbs()
    assert {"train", "eval", "download", "pipeline", "gpu-slot"} <= known
    seen = set()
    for smk in [ROOT / "Snakefile", *RULES]:
        code = "\n".join(line for line in smk.read_text().splitlines() if not line.lstrip().startswith("#"))
        for module, verb in re.findall(r"python -m ([\w.]+)(?: ([\w-]+))?", code):
            assert module == "trades_instability", f"{smk.name}: python -m {module} (use a verb of __main__.py)"
            assert verb in known, f"{smk.name}: unknown verb {verb!r}"
            seen.add(verb)
    assert {"train", "eval", "download", "pipeline", "gpu-slot"} <= seen
    for shim in ("pipeline_config.py", "gpu_slots.py"):
        assert not (ROOT / "src" / "trades_instability" / shim).exists(), shim


def test_job_environment_is_written_once():
    where = [p.name for p in [ROOT / "Snakefile", *RULES] if "PYTHONPATH" in p.read_text()]
    assert where == ["common.smk"]
    where = [p.name for p in RULES if "OMP_NUM_THREADS" in p.read_text()]
    assert where == ["common.smk"]


def test_scripts_share_one_helper():
    assert len(SCRIPTS) == 7  # aggregate, render_{table,figure,comparison,detection,grid,review}
    for script in SCRIPTS:
        text = script.read_text()
        assert "from script_job import job" in text and "with job(smk, " in text, script.name
        for own in ("basicConfig", "traceback", "sys.exit", "sys.path"):
            assert own not in text, f"{script.name} repeats {own} (workflow/scripts/script_job.py has it)"


def test_verbs_run_their_modules(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": str(Path(sys.executable).parent)}
    r = subprocess.run([sys.executable, "-m", "trades_instability", "pipeline", "validate",
                        str(ROOT / "tests" / "configs" / "smoke.yaml")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and "ok (" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "trades_instability", "gpu-slot", "0", "--", sys.executable, "-c",
                        "print('ran')"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ran", r.stdout + r.stderr
