"""tables/conventions.tex and figures/conventions.pdf from fake summary/selection (tests/_report_fakes.py):
cells are the setting's own k/n and mean ± std, a setting without runs is an explicit '--', bad specs
name the key, and the figure is written as PDF + PNG."""

from __future__ import annotations

import numpy as np
import pytest
from _report_fakes import make_fake_results

from trades_instability.report.grids import (
    build_conventions,
    convention_settings,
    render_conventions_figure,
    render_conventions_table,
)

# stand-ins: any two settings per row (which convention a setting uses is pipeline_config's check)
SPEC = {"rows": [{"label": "beta 3", "adr": "default", "official_trades": "fixed"},
                 {"label": "beta 1", "adr": "lrsched_b1", "official_trades": "no_such_setting"}]}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_results(tmp_path_factory.mktemp("fake"))


def test_cells_are_each_settings_own_numbers(fake):
    model = build_conventions(SPEC, fake["summary_csv"], fake["selection_json"])
    panel = model.panels[0]
    assert panel.rows == ["beta 3 / adr", "beta 3 / official_trades", "beta 1 / adr", "beta 1 / official_trades"]
    df = fake["summary"]
    runs = df[(df["setting"] == "default") & (df["status"] != "diverged")]
    prob = panel.cell("beta 3 / adr", "Prob.")
    assert (prob.k, prob.n) == (int(runs["unstable"].astype(bool).sum()), len(runs))
    assert panel.cell("beta 3 / adr", "AutoAttack").value == pytest.approx(runs["autoattack_acc"].mean())
    fixed = df[df["setting"] == "fixed"]
    assert panel.cell("beta 3 / official_trades", "Clean").value == pytest.approx(fixed["clean_acc"].mean())
    gap = panel.cell("beta 1 / adr", "Gap")
    lr = df[df["setting"] == "lrsched_b1"]
    assert gap.value == pytest.approx(float(np.mean(lr["pgd10_acc"] - lr["autoattack_acc"])))
    assert all(panel.cell("beta 1 / official_trades", c).is_none for c in panel.columns)
    assert "setting no_such_setting has no run in summary.csv" in model.notes


def test_render_table_and_figure(fake, tmp_path):
    render_conventions_table(SPEC, fake["summary_csv"], fake["selection_json"], tmp_path / "c.tex")
    tex = (tmp_path / "c.tex").read_text()
    assert "beta 3, ADR" in tex and "beta 1, official TRADES" in tex and "\\bottomrule" in tex
    pdf, png = render_conventions_figure(SPEC, fake["summary_csv"], fake["selection_json"], tmp_path / "c.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and png.read_bytes()[:4] == b"\x89PNG"


def test_bad_spec_names_the_key():
    with pytest.raises(ValueError, match=r"conventions.rows\[0\]' lacks official_trades"):
        convention_settings({"rows": [{"label": "x", "adr": "default"}]})
    with pytest.raises(ValueError, match="conventions.rows' must be a non-empty list"):
        convention_settings({})
    assert convention_settings(SPEC) == ["default", "fixed", "lrsched_b1", "no_such_setting"]


def test_crossarch_is_the_same_report_over_architectures(fake, tmp_path):
    from trades_instability.report.grids import GRIDS, build_grid, grid_settings, render_grid_figure, render_grid_table

    spec = {"rows": [{"label": "default", "resnet18": "default", "preact-resnet18": "fixed",
                      "wrn-34-10": "lrsched_b1"}]}
    assert GRIDS["crossarch"].run_key == "arch"
    assert grid_settings(spec, "crossarch") == ["default", "fixed", "lrsched_b1"]
    panel = build_grid(spec, fake["summary_csv"], fake["selection_json"], "crossarch").panels[0]
    assert panel.rows == ["default / resnet18", "default / preact-resnet18", "default / wrn-34-10"]
    df = fake["summary"]
    wrn = df[df["setting"] == "lrsched_b1"]
    gap = float(np.mean(wrn["pgd10_acc"] - wrn["autoattack_acc"]))
    assert panel.cell("default / wrn-34-10", "Gap").value == pytest.approx(gap)
    model = render_grid_table(spec, fake["summary_csv"], fake["selection_json"], tmp_path / "x.tex", grid="crossarch")
    tex = (tmp_path / "x.tex").read_text()
    assert model.name == "crossarch" and "default, WRN-34-10" in tex and "three architectures" in tex
    pdf, png = render_grid_figure(spec, fake["summary_csv"], fake["selection_json"], tmp_path / "x.pdf",
                                  grid="crossarch")
    assert pdf.read_bytes()[:5] == b"%PDF-" and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"crossarch.rows\[0\]' lacks wrn-34-10"):
        grid_settings({"rows": [{"label": "x", "resnet18": "a", "preact-resnet18": "b"}]}, "crossarch")
