"""Snakemake script of rule `review_report`: the review's answers (logic: trades_instability.report.review)."""
import logging
import sys
import traceback
from pathlib import Path

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1] / "src"))  # without pip install -e
from trades_instability.report.figures import run_dirs_from_paths  # noqa: E402
from trades_instability.report.review import render_review  # noqa: E402

logging.basicConfig(filename=smk.log[0], filemode="w", level=logging.INFO, format="%(asctime)s %(message)s")
try:
    epochs = smk.input.epochs
    epochs = [epochs] if isinstance(epochs, str) else list(epochs)  # snakemake hands a 1-item list as a str
    report = render_review(dict(smk.params.spec), smk.input.summary, smk.input.selection, run_dirs_from_paths(epochs),
                           smk.output.tex, smk.output.csv, smk.output.pdf, template_dir=smk.params.template_dir)
    if not Path(smk.output.png).exists():
        raise RuntimeError(f"PNG not written at {smk.output.png}")
    for block in report.prob_blocks:
        logging.info("%s: %s; Fisher p %s", block.key,
                     ", ".join(f"{r.label} {r.k}/{r.n}" for r in block.rows), block.test_p)
    logging.info("detectors: %s", ", ".join(f"{d.name} AUC {d.auc}" for d in report.detectors))
except Exception:
    logging.error("review failed:\n%s", traceback.format_exc())
    sys.exit(1)
