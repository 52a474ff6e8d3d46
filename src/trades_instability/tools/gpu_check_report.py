"""gpu-check's step f: ``DIR/report.json`` (every step's result) and ``DIR/report.md`` (the same as tables)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from trades_instability.tools.gpu_check_runner import StepResult, passed
from trades_instability.tools.text_table import fmt, render_table

# report.md keeps every column left-aligned (bench right-aligns its numbers)
_table = partial(render_table, right_align=False)


def write_report(out: Path, results: list[StepResult], meta: dict[str, Any]) -> None:
    from trades_instability.rundir.atomic_io import atomic_write_text, write_json

    ok = passed(results, meta["cuda"])
    write_json(out / "report.json", {**meta, "passed": ok,
                                     "steps": [r.__dict__ for r in results]})
    atomic_write_text(out / "report.md", render_markdown(results, meta, ok))


def render_markdown(results: list[StepResult], meta: dict[str, Any], ok: bool) -> str:
    by = {r.name: r for r in results}
    env = by["environment"].data
    lines = [f"# gpu-check: {'PASSED' if ok else 'NOT PASSED'}", "",
             f"- date: {meta['date']}", f"- device: {meta['device']}", f"- scale: {meta['scale']}",
             f"- command: `{meta['command']}`", f"- total wall time: {meta['wall_s']:.1f} s", ""]
    if env:
        lines += ["## a. Environment", "", _table(["item", "value"], [[k, str(env.get(k))] for k in (
            "torch", "cuda_runtime", "cudnn", "driver", "gpu", "memory_gib", "capability", "bf16", "matching_lock",
            "installed_lock")] + [[k, str(v)] for k, v in env.get("versions", {}).items()]), ""]
    lines += ["## Steps", "", _table(["step", "check", "status", "seconds", "result"], [
        [r.step, r.title, r.status, f"{r.seconds:.1f}", r.line.replace("|", "/")] for r in results]), ""]
    sp = by.get("speed")
    if sp and sp.status == "passed":
        rows, notes = [], []
        for r in sp.data["rows"]:
            if "not_run" in r:
                rows.append([r["row"], *["-"] * 6])
                notes.append(f"{r['row']}: not run: {r['not_run']}")
                continue
            rows.append([r["row"], fmt(r["images_per_s"], ".1f"), fmt(r["ms_per_step"], ".1f"),
                         fmt(r["ratio_to_reference"], ".2f"), fmt(r["peak_mem_gib"], ".2f"),
                         fmt(None if r["floor_fraction"] is None else 100 * r["floor_fraction"], ".1f"),
                         fmt(r["epoch_50k_s"], ".1f")])
        lines += ["## c. Speed (bench, one process)", "", f"`bench {' '.join(sp.data['bench_args'])}`; forward "
                  f"{sp.data['forward_gflops_per_image']:.4f} GFLOP/image; peak GEMM "
                  + ", ".join(f"{k} {v:.3f} TFLOP/s" for k, v in sp.data["peak_gemm_tflops"].items()), "",
                  _table(["row", "img/s", "ms/step", "x ref", "peak mem GiB", "% FLOP floor",
                                "50k-img epoch s"], rows), "", *(f"{n}\n" for n in notes)]
    sh = by.get("sharing")
    if sh and sh.status == "passed":
        lines += ["## e. Sharing the GPU", "", _table(["K jobs", "aggregate img/s", "peak GiB per job"], [
            [str(r["k"]), f"{r['aggregate_images_per_s']:.1f}", f"{r['peak_mem_gib_per_job']:.2f}"]
            for r in sh.data["results"]]), "", f"recommended `jobs_per_gpu`: {sh.data['jobs_per_gpu']} "
                  f"({sh.data['why']})", ""]
    return "\n".join(lines)

