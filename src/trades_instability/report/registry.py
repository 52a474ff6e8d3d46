"""One declaration per report artifact (tables 1-7, figures 1-7, the paper comparison, the FOSC detector and
the side-by-side grids): what it writes, what it reads, which attacks and run-config properties the settings
it names must have, and which function builds it from which template.

Everything else is derived from :data:`ARTIFACTS`, in the spirit of showyourwork's one declaration per
figure (``workflow/rules/figure.smk``):

* the per-artifact config checks (:func:`trades_instability.config.pipeline_loading._check_target_needs`): every
  setting an artifact names evaluates the artifact's :attr:`Artifact.attacks` and meets its
  :attr:`Artifact.requires`;
* the workflow's targets and inputs (:mod:`trades_instability.workflow.paths`): ``paper`` = the
  :attr:`Artifact.targets` of every configured artifact with ``in_paper``; a figure's per-run inputs are its
  :attr:`Artifact.run_files`; the rules' wildcard constraints are the registered names;
* the dispatch of :func:`trades_instability.report.tables.build_table` and
  :func:`trades_instability.report.figures.render_figure` (:attr:`Artifact.builder` + ``options``).

A new table is one entry here (plus its builder in report/tables.py, its template
``workflow/templates/<name>.tex.j2``, its spec in config.yaml and its schema entry).

Pure Python on purpose (no pandas / matplotlib / torch): the pipeline config imports it at every
``snakemake`` start; builders are named in full as ``"module:function"`` and imported on first use. Each
artifact's code (builder module, template, shared templates: :meth:`Artifact.code_files`) is an input of its rule.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trades_instability.config.run import ARCHS, CONVENTION_NAMES
from trades_instability.rundir import layout

# the kinds of artifact; `section` of a table / figure is "tables" / "figures", of the others their own name
TABLE, FIGURE, COMPARISON, DETECTION, GRID, REVIEW = "table", "figure", "comparison", "detection", "grid", "review"

# where an output lives: {tables_dir} or {figures_dir}
TABLES_DIR, FIGURES_DIR = "tables", "figures"

# where the artifacts' code lives, relative to the repository root (Artifact.code_files)
SRC_DIR, TEMPLATES_DIR = "src", "workflow/templates"
# what every table template extends and imports (workflow/templates/tableN.tex.j2: `extends`, `import`)
TABLE_TEMPLATES = ("_table.tex.j2", "_macros.tex.j2")

# why a setting needs PGD-10 / Square (the same words in every check that asks for them)
_UNSTABLE_RULE = "the Unstable rule is PGD-10 - Square >= threshold"


@dataclass(frozen=True)
class Attack:
    """An attack every setting the artifact names must evaluate (``why`` may use ``{name}``)."""

    attack: str
    why: str


@dataclass(frozen=True)
class Requirement:
    """A property the setting named by spec key ``key`` (None: every setting the spec names) must have.

    ``what`` is ``"landscape"`` (the setting's ``landscape: true``) or a dotted run-config key whose value must
    equal ``value``; ``message`` is the error after ``<key path>: `` (format fields ``setting``). ``late``
    requirements are checked after every artifact's attack checks (the order in which the pipeline config
    reports problems)."""

    key: str | None
    what: str
    value: Any
    message: str
    late: bool = False


@dataclass(frozen=True)
class Output:
    """One file an artifact's rule writes: ``{dir}/{name}{suffix}``; ``target``: part of the artifact's
    target (what `paper` / the grid target asks for)."""

    role: str  # the rule's output name (tex, csv, pdf, png)
    dir: str  # TABLES_DIR or FIGURES_DIR
    suffix: str
    target: bool = True


@dataclass(frozen=True)
class Artifact:
    """One table, figure or report of the pipeline (see the module docstring)."""

    name: str  # config key, output file stem, aggregation target (results/aggregate/<name>/)
    kind: str  # TABLE, FIGURE, COMPARISON, DETECTION, GRID
    outputs: tuple[Output, ...]
    setting_keys: tuple[str, ...] = ()  # spec keys naming one setting each (also `settings:` lists, `panels:`)
    run_files: tuple[str, ...] = ()  # per-run files read beside the aggregation (summary.csv, selection.json)
    attacks: tuple[Attack, ...] = ()
    requires: tuple[Requirement, ...] = ()
    builder: str | None = None  # "module:function", written in full (grep finds the builder's caller here)
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments of the builder
    template: str | None = None  # workflow/templates/<template>
    shared_templates: tuple[str, ...] = ()  # workflow/templates/ files the template extends or imports
    in_paper: bool = True  # a target of rule `paper`
    grid_key: str | None = None  # GRID: the run-config key whose value each column fixes
    grid_values: tuple[str, ...] = ()  # GRID: its values (a spec row names one setting per value)

    @property
    def section(self) -> str:
        """Config section of the spec: ``tables`` / ``figures``, else the artifact's own name."""
        return {TABLE: "tables", FIGURE: "figures"}.get(self.kind, self.name)

    def files(self, *, targets_only: bool = False) -> list[tuple[str, str]]:
        """(dir, file name) of the outputs, in rule order."""
        return [(o.dir, f"{self.name}{o.suffix}") for o in self.outputs if o.target or not targets_only]

    def code_files(self) -> dict[str, str | list[str]]:
        """The files of the code that makes this artifact, relative to the repository root: the builder's
        module, its template and the shared templates that one extends or imports. The workflow makes them
        inputs of the artifact's rule, so that editing one reruns exactly the artifacts it makes."""
        out: dict[str, str | list[str]] = {}
        if self.builder:
            out["builder"] = f"{SRC_DIR}/{self.builder.partition(':')[0].replace('.', '/')}.py"
        if self.template:
            out["template"] = f"{TEMPLATES_DIR}/{self.template}"
        if self.shared_templates:
            out["shared_templates"] = [f"{TEMPLATES_DIR}/{t}" for t in self.shared_templates]
        return out

    def build(self) -> Callable:
        """The builder function (imported on first use)."""
        module, _, func = (self.builder or "").partition(":")
        if not func:
            raise ValueError(f"artifact {self.name!r} has no builder")
        return getattr(importlib.import_module(module), func)

    def spec_settings(self, spec: Mapping | None) -> list[str]:
        """Settings named by the spec's :attr:`setting_keys`, in key order (each once); a missing key raises
        ValueError naming it (the figure inputs of the workflow)."""
        out: list[str] = []
        for key in self.setting_keys:
            if key not in (spec or {}):
                raise ValueError(f"config key '{self.section}.{self.name}.{key}' is missing "
                                 f"(see config.yaml's {self.section}: section)")
            if spec[key] not in out:
                out.append(spec[key])
        return out

    def attack_why(self, attack: Attack) -> str:
        return attack.why.format(name=self.name)

    def grid_rows(self, spec: Mapping | None) -> list[dict[str, str]]:
        """GRID: the ``rows`` of the spec, each with a ``label`` and one setting per grid value; a malformed
        spec raises ValueError naming the key."""
        rows = spec.get("rows") if isinstance(spec, Mapping) else None
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"config key '{self.name}.rows' must be a non-empty list")
        for i, row in enumerate(rows):
            missing = [k for k in ("label", *self.grid_values) if not isinstance(row, Mapping) or k not in row]
            if missing:
                raise ValueError(f"config key '{self.name}.rows[{i}]' lacks {', '.join(missing)}")
        return [dict(r) for r in rows]

    def grid_settings(self, spec: Mapping | None) -> list[str]:
        """GRID: every setting the rows name, in order of appearance."""
        out: list[str] = []
        for row in self.grid_rows(spec):
            out += [row[v] for v in self.grid_values if row[v] not in out]
        return out


_TEX = (Output("tex", TABLES_DIR, ".tex"),)
_PDF_PNG = (Output("pdf", FIGURES_DIR, ".pdf"), Output("png", FIGURES_DIR, ".png"))
_TABLE_ATTACKS = (Attack("pgd10", "every table reads PGD-10"), Attack("square", _UNSTABLE_RULE))
_REPORTS_AA = Attack("autoattack", "{name} reports AutoAttack")
_FIGURE_ATTACKS = (Attack("square", "Regular/Unstable seeds are chosen by PGD-10 - Square"),)


def _table(name: str, builder: str, keys: tuple[str, ...], attacks: tuple[Attack, ...] = (),
           requires: tuple[Requirement, ...] = (), **options) -> Artifact:
    return Artifact(name, TABLE, _TEX, setting_keys=keys, attacks=_TABLE_ATTACKS + attacks, requires=requires,
                    builder=builder, options=options, template=f"{name}.tex.j2", shared_templates=TABLE_TEMPLATES)


def _figure(name: str, builder: str, keys: tuple[str, ...], run_files: tuple[str, ...] = (layout.EPOCHS_CSV,),
            requires: tuple[Requirement, ...] = ()) -> Artifact:
    return Artifact(name, FIGURE, _PDF_PNG, setting_keys=keys, run_files=run_files, attacks=_FIGURE_ATTACKS,
                    requires=requires, builder=builder)


_GRID_ATTACKS = tuple(Attack(a, "the {name} table reports it") for a in ("pgd10", "square", "autoattack"))

ARTIFACTS: tuple[Artifact, ...] = (
    # ---- Tables 1-7 (report/tables.py; spec: config `tables.<name>`)
    _table("table1", "trades_instability.report.tables:build_single_run", ("setting",),
           (Attack("autoattack_individual", "Table 1 has per-attack columns"), _REPORTS_AA)),
    _table("table2", "trades_instability.report.tables:build_prob_pivot", ()),
    _table("table3", "trades_instability.report.tables:build_regular_unstable", ("regular_unstable", "fixed"),
           (_REPORTS_AA,),
           (Requirement("fixed", "fix.enabled", True, "setting {setting!r} does not enable the fix (fix.enabled: true)",
                        late=True),),
           third_label="Fixed", third_key="fixed"),
    _table("table4", "trades_instability.report.tables:build_prob_pivot", ()),
    _table("table5", "trades_instability.report.tables:build_prob_meanstd", (), (_REPORTS_AA,)),
    _table("table6", "trades_instability.report.tables:build_regular_unstable", ("regular_unstable", "modified"),
           (_REPORTS_AA,),
           (Requirement("modified", "method", "modified", "setting {setting!r} does not use method: modified",
                        late=True),),
           third_label="Modified", third_key="modified"),
    _table("table7", "trades_instability.report.tables:build_prob_meanstd", (), (_REPORTS_AA,)),
    # ---- every published cell of Tables 1-7 beside ours (report/comparison.py; spec: the whole `tables:`)
    Artifact("comparison", COMPARISON, _TEX + (Output("csv", TABLES_DIR, ".csv", target=False),),
             builder="trades_instability.report.comparison:render_comparison", template="comparison.tex.j2"),
    # ---- Figures 1-7 (report/figures.py; spec: config `figures.<name>`)
    _figure("figure1", "trades_instability.report.figures:draw_figure1", ("setting",), (layout.LANDSCAPE_NPZ,),
            (Requirement(None, "landscape", True,
                         "setting {setting!r} computes no loss landscape (set settings.{setting}.landscape: true)"),)),
    _figure("figure2", "trades_instability.report.figures:draw_figure2", ("setting",)),
    _figure("figure3", "trades_instability.report.figures:draw_figure3", ("setting",)),
    _figure("figure4", "trades_instability.report.figures:draw_figure4", ("setting",),
            (layout.EPOCHS_CSV, layout.BATCHES_CSV),
            (Requirement(None, "log_batch_metrics", True, "setting {setting!r} does not log batch metrics "
                                                          "(set log_batch_metrics: true in its overrides)"),)),
    _figure("figure5", "trades_instability.report.figures:draw_figure5", ("setting",)),
    _figure("figure6", "trades_instability.report.figures:draw_figure6", ("unstable", "fixed")),
    _figure("figure7", "trades_instability.report.figures:draw_figure7", ("unstable", "regular")),
    # ---- FOSC as a detector (report/detection.py; spec: config `detection:`, settings default "all")
    Artifact("detection", DETECTION,
             (Output("tex", TABLES_DIR, ".tex"), Output("csv", TABLES_DIR, ".csv", target=False)) + _PDF_PNG,
             run_files=(layout.EPOCHS_CSV,),
             attacks=(Attack("pgd10", "the detector's labels are PGD-10 - Square >= threshold"),
                      Attack("square", "the detector's labels are PGD-10 - Square >= threshold")),
             builder="trades_instability.report.detection:render_detection", template="detection.tex.j2"),
    # ---- side by side under each value of one run-config key (report/grids.py; targets of their own)
    Artifact("conventions", GRID, _TEX + _PDF_PNG, attacks=_GRID_ATTACKS, in_paper=False,
             builder="trades_instability.report.grids:render_grid_table", template="conventions.tex.j2",
             shared_templates=TABLE_TEMPLATES, grid_key="convention", grid_values=CONVENTION_NAMES),
    # ---- the reviewers' questions answered by experiment (report/review.py; spec: config `review:`)
    Artifact("review", REVIEW,
             (Output("tex", TABLES_DIR, ".tex"), Output("csv", TABLES_DIR, ".csv", target=False)) + _PDF_PNG,
             run_files=(layout.EPOCHS_CSV,), in_paper=False,
             attacks=(Attack("pgd10", "the review's P(Unstable) is PGD-10 - Square >= threshold"),
                      Attack("square", _UNSTABLE_RULE)),
             builder="trades_instability.report.review:render_review", template="review.tex.j2"),
    Artifact("crossarch", GRID, _TEX + _PDF_PNG, attacks=_GRID_ATTACKS, in_paper=False,
             builder="trades_instability.report.grids:render_grid_table", template="crossarch.tex.j2",
             shared_templates=TABLE_TEMPLATES, grid_key="arch", grid_values=ARCHS),
)

# the review's blocks whose rows report AutoAttack (their settings must evaluate it; report/review.py)
REVIEW_AUTOATTACK_BLOCKS = ("methods", "noise")

REGISTRY: dict[str, Artifact] = {a.name: a for a in ARTIFACTS}


def of_kind(kind: str) -> list[Artifact]:
    """The registered artifacts of one kind, in registry order."""
    return [a for a in ARTIFACTS if a.kind == kind]


def names(kind: str) -> tuple[str, ...]:
    return tuple(a.name for a in of_kind(kind))


TABLES = names(TABLE)
FIGURES = names(FIGURE)
GRIDS = names(GRID)
# every spec key that names one setting (the pipeline config's reference checks)
SETTING_KEYS = tuple(dict.fromkeys(k for a in ARTIFACTS for k in a.setting_keys))


def get(name: str, kind: str | None = None) -> Artifact:
    """The artifact ``name`` (of ``kind``); ValueError naming the registered ones otherwise."""
    art = REGISTRY.get(name)
    if art is None or (kind is not None and art.kind != kind):
        known = names(kind) if kind else tuple(REGISTRY)
        raise ValueError(f"unknown {kind or 'artifact'} {name!r}; expected one of {', '.join(known)}")
    return art


def configured(raw: Mapping[str, Any], kind: str) -> list[Artifact]:
    """The artifacts of ``kind`` the config asks for, in registry order: tables / figures present in their
    section, grids with a non-empty section; the comparison and the detector always. A name in the section
    that is not registered raises ValueError (the schema rejects it first)."""
    if kind in (TABLE, FIGURE):
        section = raw.get("tables" if kind == TABLE else "figures") or {}
        for n in section:
            get(n, kind)
        return [a for a in of_kind(kind) if a.name in section]
    if kind in (GRID, REVIEW):
        return [a for a in of_kind(kind) if raw.get(a.name)]
    return of_kind(kind)


def run_value(run_config: Mapping[str, Any], dotted: str) -> Any:
    """``run_config["a"]["b"]`` for ``"a.b"``."""
    value: Any = run_config
    for part in dotted.split("."):
        value = value[part]
    return value
