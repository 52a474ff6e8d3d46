"""Tables 1-7 and the paper comparison rendered from fake aggregation outputs (aggregate.py's formats)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from _report_fakes import make_fake_results

from trades_instability.report import comparison as C
from trades_instability.report import paper_results as pr
from trades_instability.report import tables as T

EXPECTED_ROWS = {
    "table1": ["Regular", "Unstable"],
    "table3": ["Regular", "Unstable", "Fixed"],
    "table6": ["Regular", "Unstable", "Modified"],
    "table5": ["beta=1", "beta=6"],
    "table7": ["beta=1"],
}
EXPECTED_COLS = {
    "table1": ["Clean", "PGD-10", "AutoAttack", "APGD-CE", "APGD-DLR", "FAB", "Square"],
    "table3": ["Clean", "PGD-10", "AutoAttack", "Gap"],
    "table6": ["Clean", "PGD-10", "AutoAttack", "Gap"],
    "table5": ["Prob.", "Clean", "PGD-10", "AutoAttack", "Gap"],
    "table7": ["Prob.", "Clean", "PGD-10", "AutoAttack", "Gap"],
}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_results(tmp_path_factory.mktemp("fake"))


@pytest.fixture(scope="module")
def fake_stable(tmp_path_factory):
    return make_fake_results(tmp_path_factory.mktemp("fake_stable"), with_unstable=False)


def _expected_meanstd(summary: pd.DataFrame, setting: str, seeds, col: str):
    rows = summary[(summary.setting == setting) & summary.seed.isin(seeds)]
    vals = (rows["pgd10_acc"] - rows["autoattack_acc"]) if col == "Gap" else rows[T.METRIC_COLUMNS[col]]
    return float(vals.mean()), float(vals.std(ddof=1))


def check_latex(tex: str) -> None:
    """Structural checks standing in for a LaTeX compile (no TeX on this machine)."""
    body = "\n".join(ln for ln in tex.splitlines() if not ln.lstrip().startswith("%"))
    stripped = body.replace(r"\{", "").replace(r"\}", "")
    depth = 0
    for ch in stripped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "unbalanced braces"
    assert depth == 0, "unbalanced braces"
    for env in ("table", "tabular"):
        assert body.count(rf"\begin{{{env}}}") == body.count(rf"\end{{{env}}}") >= 1
    assert r"\toprule" in body and r"\bottomrule" in body and r"\midrule" in body
    no_math = re.sub(r"\$[^$]*\$", "", body)
    assert not re.search(r"(?<!\\)[_&%#]", no_math.replace(" & ", " ").replace(r"\\", "")), "unescaped special char"
    assert "<<" not in body and "<%" not in body  # no jinja left over
    # every tabular row has as many cells as columns
    for block in re.findall(r"\\begin\{tabular\}\{([lcr]+)\}(.*?)\\end\{tabular\}", body, flags=re.S):
        ncol = len(block[0])
        for line in block[1].splitlines():
            line = line.strip()
            if line.endswith(r"\\") and not line.startswith(r"\multicolumn"):
                assert len(re.findall(r"(?<!\\)&", line)) == ncol - 1, line


@pytest.mark.parametrize("name", pr.TABLES)
def test_every_table_renders(fake, tmp_path, name):
    out = tmp_path / f"{name}.tex"
    model = T.render_table(name, fake["tables"][name], fake["summary"], fake["selection"], out)
    tex = out.read_text()
    check_latex(tex)
    assert rf"\label{{tab:reproduced-{name}}}" in tex
    if name in EXPECTED_ROWS:
        (panel,) = model.panels
        assert panel.rows == EXPECTED_ROWS[name]
        assert panel.columns == EXPECTED_COLS[name]
        for col in EXPECTED_COLS[name]:
            assert T.latex_escape(col) in tex


def test_table1_uses_representative_seeds(fake):
    m = T.build_table("table1", fake["tables"]["table1"], fake["summary_csv"], fake["selection_json"])
    s = fake["summary"]
    for label, seed in (("Regular", 0), ("Unstable", 3)):
        row = s[(s.setting == "default") & (s.seed == seed)].iloc[0]
        for col, key in [("Clean", "clean_acc"), ("APGD-CE", "apgd_ce_acc"), ("APGD-DLR", "apgd_t_acc"),
                         ("FAB", "fab_t_acc"), ("Square", "square_acc"), ("AutoAttack", "autoattack_acc")]:
            cell = m.panels[0].cell(label, col)
            assert cell.kind == "value" and cell.seeds == [seed]
            assert cell.value == pytest.approx(row[key])
    assert m.panels[0].row_headers["Unstable"] == "Unstable (seed 3)"


def test_table3_mean_std_and_fixed_seeds(fake, tmp_path):
    out = tmp_path / "t3.tex"
    m = T.render_table("table3", fake["tables"]["table3"], fake["summary"], fake["selection"], out)
    tex = out.read_text()
    s = fake["summary"]
    p = m.panels[0]
    for label, setting, seeds in (("Regular", "default", [0, 1, 2]), ("Unstable", "default", [3, 4]),
                                  ("Fixed", "fixed", [3, 4])):  # fixed seed 0 is not an Unstable seed
        for col in T.MEANSTD_COLUMNS:
            mean, std = _expected_meanstd(s, setting, seeds, col)
            cell = p.cell(label, col)
            assert cell.seeds == seeds
            assert cell.value == pytest.approx(mean) and cell.std == pytest.approx(std)
            assert rf"{mean:.4f} $\pm$ {std:.4f}" in tex
    assert "0.5400 $\\pm$ 0.0100" in tex  # Regular clean: 0.53, 0.54, 0.55
    assert "diverged seed(s) 5" in tex


def test_table6_modified_all_seeds(fake):
    m = T.build_table("table6", fake["tables"]["table6"], fake["summary"], fake["selection"])
    mean, std = _expected_meanstd(fake["summary"], "modified", [0, 1], "Clean")
    c = m.panels[0].cell("Modified", "Clean")
    assert (c.value, c.std) == (pytest.approx(mean), pytest.approx(std))


def test_prob_tables_counts(fake, tmp_path):
    out = tmp_path / "t2.tex"
    m = T.render_table("table2", fake["tables"]["table2"], fake["summary"], fake["selection"], out)
    tex = out.read_text()
    left, right = m.panels
    assert (left.row_var, left.col_var, right.col_var) == ("beta", "batch_size", "lr")
    assert left.rows == ["beta=1", "beta=3"] and left.columns == ["batch_size=128", "batch_size=256"]
    c = left.cell("beta=1", "batch_size=128")
    assert (c.k, c.n) == (2, 3)
    c = left.cell("beta=3", "batch_size=128")  # seed 2 diverged: excluded and noted
    assert (c.k, c.n) == (1, 2) and "diverged" in c.note and c.marker
    assert (left.cell("beta=3", "batch_size=256").k, left.cell("beta=3", "batch_size=256").n) == (0, 1)
    assert left.cell("beta=1", "batch_size=256").is_none
    assert (right.cell("beta=3", "lr=0.01").k, right.cell("beta=3", "lr=0.01").n) == (0, 2)
    assert r"\textbf{2}/3" in tex and "1/2" in tex and r"\textbf{1}/2" not in tex  # bold only for a majority
    assert "Learning Rate = 0.1" in tex and "Batch Size = 128" in tex

    m4 = T.build_table("table4", fake["tables"]["table4"], fake["summary"], fake["selection"])
    assert m4.panels[0].columns == ["dataset=cifar10", "dataset=cifar100"]
    assert m4.panels[0].column_headers["dataset=cifar10"] == "CIFAR-10"

    m5 = T.build_table("table5", fake["tables"]["table5"], fake["summary"], fake["selection"])
    c = m5.panels[0].cell("beta=1", "Prob.")
    assert (c.k, c.n) == (2, 2)
    assert m5.panels[0].cell("beta=6", "Prob.").k == 0


def test_empty_groups_render_none(fake_stable, tmp_path):
    for name in ("table1", "table3", "table6"):
        out = tmp_path / f"{name}.tex"
        m = T.render_table(name, fake_stable["tables"][name], fake_stable["summary"], fake_stable["selection"], out)
        tex = out.read_text()
        check_latex(tex)
        p = m.panels[0]
        for col in p.columns:
            assert p.cell("Unstable", col).is_none
        assert "--\\textsuperscript{a}" in tex and "no Unstable run in default" in tex
        if name == "table3":
            assert all(p.cell("Fixed", c).is_none for c in p.columns)
            assert "no Fixed run with the same seed" in tex
        # nothing invented: only the Regular row (and Modified) carry numbers
        assert all(p.cell("Regular", c).value is not None for c in p.columns)


def test_missing_attack_column_and_single_run(fake, tmp_path):
    s = fake["summary"].copy()
    s["apgd_ce_acc"] = np.nan
    m = T.build_table("table1", fake["tables"]["table1"], s, fake["selection"])
    assert m.panels[0].cell("Regular", "APGD-CE").is_none
    assert "not evaluated" in m.panels[0].cell("Regular", "APGD-CE").note
    m7 = T.build_table("table7", fake["tables"]["table7"], fake["summary"], fake["selection"])
    c = m7.panels[0].cell("beta=1", "Clean")  # one run: mean without std, footnoted
    assert c.value == pytest.approx(0.60) and not np.isfinite(c.std) and "single run" in c.note


def test_missing_spec_key_names_it(fake, tmp_path):
    with pytest.raises(ValueError, match="tables.table3.fixed"):
        T.build_table("table3", {"regular_unstable": "default"}, fake["summary"], fake["selection"])
    with pytest.raises(ValueError, match="unknown table"):
        T.build_table("table9", {"setting": "default"}, fake["summary"], fake["selection"])


def test_latex_escape():
    assert T.latex_escape("c100_b1 50% & #1") == r"c100\_b1 50\% \& \#1"


def test_comparison_every_paper_cell(fake, tmp_path):
    tex, csv = tmp_path / "comparison.tex", tmp_path / "comparison.csv"
    df = C.render_comparison(fake["summary"], fake["selection"], fake["tables"], tex, csv)
    assert len(df) == len(pr.paper_cells()) == 90
    assert df[["table", "panel", "row", "column"]].drop_duplicates().shape[0] == 90
    back = pd.read_csv(csv)
    assert list(back.columns) == C.COMPARISON_COLUMNS and len(back) == 90
    # difference = reproduced - paper where both exist, empty otherwise
    both = df["reproduced"].notna()
    assert np.allclose(df.loc[both, "difference"], df.loc[both, "reproduced"] - df.loc[both, "paper"])
    assert df.loc[~both, "difference"].isna().all()
    r = df[(df.table == "table1") & (df.row == "Unstable") & (df.column == "Square")].iloc[0]
    assert r.paper == 0.1215 and r.reproduced == pytest.approx(0.12) and r.difference == pytest.approx(0.12 - 0.1215)
    r = df[(df.table == "table2") & (df.row == "beta=1") & (df.column == "batch_size=128")].iloc[0]
    assert r.paper_text == "10/10" and r.reproduced_text == "2/3" and r.difference == pytest.approx(2 / 3 - 1)
    r = df[(df.table == "table3") & (df.row == "Fixed") & (df.column == "Gap")].iloc[0]
    assert r.paper == 0.0451 and r.paper_std == 0.0032
    assert r.reproduced == pytest.approx(_expected_meanstd(fake["summary"], "fixed", [3, 4], "Gap")[0])
    r = df[(df.table == "table2") & (df.row == "beta=6")].iloc[0]  # no beta=6 setting in the fake table2
    assert pd.isna(r.reproduced) and pd.isna(r.difference) and r.reproduced_text == "--"
    text = tex.read_text()
    check_latex(text)
    assert text.count(r"\begin{table}") == 7
    # every cell has a verdict; single-run Table 1 cells are never tested
    assert df["verdict"].isin(["consistent", "differs", "not testable"]).all()
    assert (df.loc[df.table == "table1", "verdict"] == "not testable").all()
    r = df[(df.table == "table2") & (df.row == "beta=1") & (df.column == "batch_size=128")].iloc[0]
    assert r.test == "Fisher exact" and r.p_value == pytest.approx(3 / 13)  # 2/3 vs 10/10, by hand


def test_comparison_without_unstable_and_missing_spec(fake_stable, tmp_path):
    specs = dict(fake_stable["tables"])
    del specs["table7"]
    df = C.render_comparison(fake_stable["summary"], fake_stable["selection"], specs,
                             tmp_path / "c.tex", tmp_path / "c.csv")
    assert len(df) == 90
    t7 = df[df.table == "table7"]
    assert t7["reproduced"].isna().all() and t7["note"].str.contains("tables.table7").all()
    u = df[(df.table == "table3") & (df.row == "Unstable")]
    assert u["reproduced"].isna().all() and u["note"].str.contains("no Unstable run").all()


def test_empty_summary_renders_every_table(tmp_path):
    cols = ["setting", "seed", "dataset", "beta", "batch_size", "lr", "status", "clean_acc", "pgd10_acc",
            "square_acc", "autoattack_acc", "unstable"]
    empty = pd.DataFrame(columns=cols)
    from _report_fakes import TABLE_SPECS

    for name in pr.TABLES:
        out = tmp_path / f"{name}.tex"
        m = T.render_table(name, TABLE_SPECS[name], empty, {}, out)
        check_latex(out.read_text())
        assert all(c.is_none for p in m.panels for c in p.cells.values())
    df = C.render_comparison(empty, {}, TABLE_SPECS, tmp_path / "c.tex", tmp_path / "c.csv")
    assert len(df) == 90 and df["reproduced"].isna().all()


def test_registry_entries_resolve():
    """Every artifact of report/registry.py names a builder that exists and a template that exists; the
    tables and figures are numbered 1-7 as the workflow's wildcard constraints were."""
    from trades_instability.report import registry
    from trades_instability.report.latex import default_template_dir

    assert registry.TABLES == tuple(f"table{i}" for i in range(1, 8))
    assert registry.FIGURES == tuple(f"figure{i}" for i in range(1, 8))
    assert registry.GRIDS == ("conventions", "crossarch")
    for art in registry.ARTIFACTS:
        assert callable(art.build()), art.name
        if art.template:
            assert (default_template_dir() / art.template).exists(), art.template
    with pytest.raises(ValueError, match="unknown table 'table8'; expected one of table1, "):
        T.build_table("table8", {"setting": "x"}, pd.DataFrame({"setting": [], "seed": []}), {})
