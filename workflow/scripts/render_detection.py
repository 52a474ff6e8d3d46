"""Snakemake script of rule `detection`: FOSC as a detector (logic: trades_instability.report.detection)."""
import logging
import sys
import traceback
from pathlib import Path

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1] / "src"))  # without pip install -e
from trades_instability.report.detection import render_detection  # noqa: E402
from trades_instability.report.figures import run_dirs_from_paths  # noqa: E402

logging.basicConfig(filename=smk.log[0], filemode="w", level=logging.INFO, format="%(asctime)s %(message)s")
try:
    epochs = smk.input.epochs
    epochs = [epochs] if isinstance(epochs, str) else list(epochs)  # snakemake hands a 1-item list as a str
    report = render_detection(smk.input.summary, smk.input.selection, run_dirs_from_paths(epochs),
                              list(smk.params.settings), smk.output.tex, smk.output.csv, smk.output.pdf,
                              template_dir=Path(smk.input.template).parent)
    if not Path(smk.output.png).exists():
        raise RuntimeError(f"PNG not written at {smk.output.png}")
    g = report.pooled
    logging.info("%d runs (%d Unstable, %d Regular); %s", len(report.traces), g.n_unstable, g.n_regular,
                 f"AUC {g.auc:.3f}, threshold {g.threshold:.4g}" if g.enough else "not enough runs to calibrate")
    for note in report.notes:
        logging.info("%s", note)
except Exception:
    logging.error("detection failed:\n%s", traceback.format_exc())
    sys.exit(1)
