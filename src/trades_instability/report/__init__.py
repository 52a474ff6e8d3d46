"""Reports from the aggregated results: LaTeX tables, figures, the FOSC detector, the convention and
architecture grids and the comparison with the paper's published numbers.

registry (one declaration per artifact: outputs, inputs, checks, builder, template), cells (table model and
cells), latex (escaping, templates), tables, figures, comparison (+ comparison_stats, paper_results),
detection, grids."""
