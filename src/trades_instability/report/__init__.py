"""Reports from the aggregated results: LaTeX tables, figures, the FOSC detector, the convention and
architecture grids and the comparison with the paper's published numbers."""
