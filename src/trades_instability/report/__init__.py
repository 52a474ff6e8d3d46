"""Reports from the aggregated results.

- ``registry``: one declaration per table, figure and report (outputs, inputs, attacks and run properties
  it needs, builder, template); the workflow and the config checks derive from it.
- ``tables``: the table builders; ``cells``: the table model, mean ± std and k/n cells; ``latex``: jinja2
  templates and escaping.
- ``figures``: the figure builders.
- ``detection``: FOSC (and SGCS, GradAlign) as a detector of Unstable runs; ``detection_stats``: its ROC
  AUC, bootstrap interval and Youden threshold.
- ``grids``: the side-by-side reports (conventions, crossarch).
- ``review``: the reviewers' questions answered by experiment.
- ``comparison``: every cell of Tables 1-7 beside the paper's; ``comparison_stats``: its tests and
  verdicts; ``paper_results``: the paper's published numbers (paper_results.yaml).
"""
