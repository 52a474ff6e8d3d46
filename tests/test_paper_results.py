"""The package's paper_results.yaml holds exactly the published numbers of Tables 1-7."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trades_instability.report import paper_results as pr

# the paper text sits in shared/ beside the checkout (as in CI); the test skips where it does not
PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "paper" / "trades-overestimation-paper.md"


def test_cell_counts():
    counts = {t: len(pr.paper_cells(t)) for t in pr.TABLES}
    assert counts == {"table1": 14, "table2": 18, "table3": 12, "table4": 9, "table5": 15, "table6": 12, "table7": 10}
    keys = [(c.table, c.panel, c.row, c.column) for c in pr.paper_cells()]
    assert len(keys) == len(set(keys)) == 90


@pytest.mark.parametrize("table,row,column,expected", [
    ("table1", "Unstable", "Square", 0.1215),
    ("table1", "Regular", "Clean", 0.5363),
    ("table1", "Regular", "APGD-DLR", 0.2128),
    ("table1", "Unstable", "AutoAttack", 0.1042),
])
def test_table1_values(table, row, column, expected):
    c = pr.paper_cell(table, row, column)
    assert c.kind == "value" and c.value == expected


@pytest.mark.parametrize("table,row,column,mean,std", [
    ("table3", "Fixed", "Gap", 0.0451, 0.0032),
    ("table3", "Unstable", "AutoAttack", 0.1292, 0.0344),
    ("table3", "Regular", "PGD-10", 0.2440, 0.0006),
    ("table5", "beta=1", "AutoAttack", 0.0482, 0.0064),
    ("table5", "beta=6", "Clean", 0.5572, 0.0005),
    ("table6", "Modified", "Clean", 0.5026, 0.0057),
    ("table6", "Unstable", "Gap", 0.1471, 0.0455),
    ("table7", "beta=3", "PGD-10", 0.3180, 0.0187),
    ("table7", "beta=1", "Gap", 0.1875, 0.0238),
])
def test_meanstd_values(table, row, column, mean, std):
    c = pr.paper_cell(table, row, column)
    assert (c.kind, c.value, c.std) == ("meanstd", mean, std)
    assert c.text == f"{mean:.4f} ± {std:.4f}"


@pytest.mark.parametrize("table,row,column,k,n", [
    ("table2", "beta=3", "batch_size=256", 7, 10),
    ("table2", "beta=3", "batch_size=512", 0, 10),
    ("table2", "beta=6", "batch_size=128", 1, 10),
    ("table2", "beta=3", "lr=0.01", 0, 10),
    ("table2", "beta=6", "lr=0.05", 1, 10),
    ("table4", "beta=1", "dataset=tinyimagenet", 2, 3),
    ("table4", "beta=1", "dataset=cifar10", 1, 6),
    ("table4", "beta=3", "dataset=cifar100", 7, 10),
    ("table5", "beta=1", "Prob.", 3, 3),
    ("table7", "beta=3", "Prob.", 10, 10),
])
def test_prob_values(table, row, column, k, n):
    c = pr.paper_cell(table, row, column)
    assert (c.kind, c.k, c.n) == ("prob", k, n)
    assert c.value == pytest.approx(k / n)


def test_format_key_and_panels():
    assert pr.format_key(1.0) == "1" and pr.format_key(0.01) == "0.01" and pr.format_key("256") == "256"
    assert pr.key_label("beta", 3.0) == "beta=3"
    assert [v[1:] for v in pr.panel_vars("table2")] == [("beta", "batch_size"), ("beta", "lr")]
    with pytest.raises(KeyError):
        pr.paper_cell("table1", "Fixed", "Clean")


# ----------------------------------------------------------------- full cross-check against the paper text
def _numbers(cell: str) -> list[float]:
    cell = re.sub(r"<[^>]+>", "", cell)
    return [float(x) for x in re.findall(r"\d+\.\d+|\d+", cell)]


@pytest.mark.skipif(not PAPER_MD.exists(), reason="paper markdown not available")
def test_every_cell_matches_paper_text():
    text = PAPER_MD.read_text()
    lines = [ln.split("\t") for ln in text.splitlines() if "\t" in ln]

    def rows_starting(label, ncols):
        return [ln for ln in lines if ln[0].strip() == label and len(ln) == ncols]

    # Table 1: two rows, 7 plain numbers
    t1 = {r: rows_starting(r, 8) for r in ("Regular", "Unstable")}
    for row, hits in t1.items():
        assert len(hits) == 1
        vals = [_numbers(c)[0] for c in hits[0][1:]]
        assert vals == [c.value for c in pr.paper_cells("table1") if c.row == row]
    # Tables 3 and 6 (Regular/Unstable appear with 5 tab cells in both; Fixed in 3, Modified in 6)
    ms_rows = rows_starting("Regular", 5) + rows_starting("Unstable", 5)
    assert len(ms_rows) == 4
    for table, third in (("table3", "Fixed"), ("table6", "Modified")):
        (line,) = rows_starting(third, 5)
        got = [tuple(_numbers(c)) for c in line[1:]]
        assert got == [(c.value, c.std) for c in pr.paper_cells(table) if c.row == third]
        for row in ("Regular", "Unstable"):  # printed identically in Tables 3 and 6
            want = [(c.value, c.std) for c in pr.paper_cells(table) if c.row == row]
            for ln in rows_starting(row, 5):
                assert [tuple(_numbers(c)) for c in ln[1:]] == want
    # Tables 5 and 7: rows "$\beta = b$" with Prob k/n and 4 mean/std cells
    beta_rows = [ln for ln in lines if ln[0].strip().startswith(r"$\beta =") and len(ln) == 6]
    assert len(beta_rows) == 5
    t5, t7 = beta_rows[:3], beta_rows[3:]
    for table, block in (("table5", t5), ("table7", t7)):
        for ln in block:
            beta = _numbers(ln[0])[0]
            cells = [c for c in pr.paper_cells(table) if c.row == f"beta={beta:g}"]
            k, n = _numbers(ln[1])
            assert (cells[0].k, cells[0].n) == (k, n)
            assert [tuple(_numbers(c)) for c in ln[2:]] == [(c.value, c.std) for c in cells[1:]]
    # Table 2 (two panels on one line: 8 tab cells) and Table 4 (4 cells)
    t2 = [ln for ln in lines if len(ln) == 8 and ln[0].strip() in {"1", "3", "6"}]
    assert len(t2) == 3
    for ln in t2:
        beta = int(ln[0])
        left = [tuple(_numbers(c)) for c in ln[1:4]]
        right = [tuple(_numbers(c)) for c in ln[5:8]]
        row = [c for c in pr.paper_cells("table2") if c.row == f"beta={beta}"]
        assert left == [(c.k, c.n) for c in row if c.panel.startswith("Learning")]
        assert right == [(c.k, c.n) for c in row if c.panel.startswith("Batch")]
    t4 = [ln for ln in lines if len(ln) == 4 and ln[0].strip() in {"1", "3", "6"}]
    assert len(t4) == 3
    for ln in t4:
        beta = int(ln[0])
        row = [c for c in pr.paper_cells("table4") if c.row == f"beta={beta}"]
        assert [tuple(_numbers(c)) for c in ln[1:]] == [(c.k, c.n) for c in row]
