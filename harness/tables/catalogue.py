"""The paper's tables and figures as data: the one list that `make tableN`, `make paper`, the
long-table reports, the compute plan, `python -m harness.run --list` and the tests follow.

A table is its number, title, kind and notes, its rows and what it measures of them:

- `kind='wide'`: one line per run with its clean, corrupted and FLOPs numbers beside the
  paper's (harness/tables/wide.py; reference numbers in
  `reports/reference/freetickets_tables.csv`);
- `kind='long'`: one line per printed number, `measure(run_dir) -> {metric or (setting,
  metric[, M]): value}` of each run (harness/tables/long.py; reference numbers in
  `reports/reference/freetickets_tables_extra.csv`).

Its rows are the gin files of `gin/table<N>/` that name the paper row they reproduce on a line
`# row: <method as in the reference tables>` (and an ablation row its `# setting: ...`), plus
`reuses`: rows of other tables it shows again (Table 4's rows are Tables 1-2's), under a name
of its own, with that table's layering. Their runs are the same runs: the run store files a
run by its configuration (harness/store/runs.py). Adding a table is one entry here, its gin rows
and its reference numbers.

A row is layered with `gin/scale/<scale>.gin` (none at paper scale), then its folder's
`scale/<scale>.gin` where the table needs its own (Table 2 keeps CIFAR-100 at cpu scale), then
its folder's `scale/<scale>/<row>.gin` where one row does (Table 6's CIFAR-100 rows), then any
extra files (harness/tables/rows.py).
"""
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.tables.context import DEFAULT_GIN_DIR
from harness.tables.notes import PROTOCOL_NOTE
from harness.tables.rows import ROW_LINE
from harness.core.errors import UserError, first_line

TABLE_KINDS = ("wide", "long")  # harness/tables/kinds.py KINDS
CATALOGUE_HELP = ("a Python file defining CATALOGUE: the paper's tables and your own "
                  "(harness/tables/catalogue.py `load`)")  # the flag --catalogue


@dataclass(frozen=True)
class Measured:
    """The function `name` of harness/tables/<module>.py (called with `keywords` besides its
    arguments), imported on its first call: every command reads the catalogue, few measure
    runs, and the measures need torch, which `--help` and a flag mistake must not wait for."""

    module: str
    name: str
    keywords: tuple[tuple[str, object], ...] = ()

    def __call__(self, *args):
        function = getattr(importlib.import_module(f"harness.tables.{self.module}"), self.name)
        return function(*args, **dict(self.keywords))


DIVERSITY_AND_ACCURACY = Measured("diversity", "diversity_and_accuracy")


@dataclass(frozen=True)
class Reuse:
    """A row of another table shown again: `row` is '<folder>/<its gin file stem>'."""

    name: str
    row: str
    setting: str | None = None  # where this table's setting column names it
    # The method this table prints it as, where not the reused row's `# row:` (Table 5's DST
    # without exploration is the Static row's training, step for step).
    method: str | None = None


def reused(folder: str, stems, suffix: str = "", setting: str | None = None
           ) -> tuple[Reuse, ...]:
    return tuple(Reuse(f"{stem}{suffix}", f"{folder}/{stem}", setting) for stem in stems)


@dataclass(frozen=True)
class Table:
    number: int
    title: str
    kind: str  # 'wide' or 'long': its `TableKind` (harness/tables/kinds.py)
    measure: Callable[[Path], dict] | None = None  # long tables
    across: Callable | None = None  # cells across rows (Table 8's correlations)
    per_class: bool = False  # the reference's settings are class labels, matched by position
    notes: tuple[str, ...] = ()
    reuses: tuple[Reuse, ...] = ()
    # The scale the rows run at where it differs from the page's: Table 3 (ImageNet) stands
    # in at smoke scale by its own `tiny` scale (real JPEGs in ImageNet's layout).
    scales: dict = field(default_factory=dict)
    # The printed numbers, where not the paper's reference CSV of the table's kind: a CSV of
    # the same columns (a table of one's own may have none: its cells are then ours alone).
    reference: Path | None = None

    @property
    def folder(self) -> str:
        return f"table{self.number}"

    def scale(self, page_scale: str) -> str:
        return self.scales.get(page_scale, page_scale)


@dataclass(frozen=True)
class Figure:
    key: str  # '2-left'
    title: str
    # The function of harness/paper/figures.py that draws it and what it is drawn from
    # (harness/tables/sources.py `Sources`); None: nothing to regenerate (a diagram).
    draw: str | None = None
    inputs: Callable | None = None

    @property
    def folder(self) -> str:
        """Its own rows' folder, gin/figure<N>/, where it has runs of its own."""
        return f"figure{self.key.split('-')[0]}"


SPARSE_SET = ("dst_m3_s08", "edst_m3_s08", "ltr_m3_s08", "pf_m3_s08", "static_m3_s08")
OOD_ROWS = ("dense", "dst_m3_s08", "edst_m3_s08", "edst_m7_s09", "static_m3_s08")
OOD_NOTES = (
    PROTOCOL_NOTE,
    "M = 1 rows: member 0 of the row's M = 3 (or 7) run, not a run of their own (the paper "
    "does not say which member it took).",
    "AUROC by the maximum softmax probability; in-distribution = the test set. "
    "gaussian_noise: uncertainty-baselines' random_gaussian images (each pixel N(0, 1), each "
    "image rescaled to the full pixel range), as many as the test set. SVHN and the other "
    "CIFAR come through torchvision's classes; a missing one is named with the file to put "
    "where.",
    "At smoke scale the digits (8x8 grey) stand in for CIFAR: the Gaussian noise images are "
    "shaped like them; SVHN and the other CIFAR do not fit, so their cells stay missing.")

TABLES = (
    Table(1, "CIFAR-10 (WRN-28-10): accuracy, NLL, ECE, corrupted CIFAR-10-C, FLOPs", "wide"),
    Table(2, "CIFAR-100 (WRN-28-10): the same as Table 1", "wide"),
    Table(3, "ImageNet (ResNet-50): accuracy, NLL, ECE, ImageNet-A, FLOPs", "wide",
          scales={"smoke": "tiny"}),
    Table(4, "Prediction disagreement and KL divergence among sparse ensembles (paper §5.1, "
             "Table 4: M = 3, S = 0.8; the dense ensemble M = 4)", "long",
          DIVERSITY_AND_ACCURACY,
          notes=(PROTOCOL_NOTE,
                 "Rows are the runs of Tables 1 (CIFAR-10) and 2 (CIFAR-100), reused by "
                 "configuration, not trained again.",
                 "The paper's d_dis is printed by the authors' code, which adds 0.001 to every "
                 "off-diagonal entry of the pairwise disagreement matrix before averaging: "
                 "their numbers are 0.001 above the plain mean that ours is (compare ours + "
                 "0.001 with theirs). d_KL has no such offset."),
          reuses=(*reused("table1", ("dense_ensemble", *SPARSE_SET), "_c10"),
                  *reused("table2", ("dense_ensemble", *SPARSE_SET), "_c100"))),
    Table(5, "Parameter exploration ablation (paper §5.3, Table 5: M = 3, S = 0.8)", "long",
          DIVERSITY_AND_ACCURACY,
          notes=(PROTOCOL_NOTE,
                 "Without exploration = `SparsitySpec.exploration = False`: the masks of the "
                 "initialisation are kept for the whole run (no prune-and-grow every dT and, "
                 "for EDST, no global escapes between refinement phases); EDST's tickets then "
                 "differ only by their place on the one trajectory. DST without exploration is "
                 "Static Sparse training, as the paper's equal numbers say.",
                 "With exploration: the Table 1-2 runs of EDST and DST, reused. DST without "
                 "exploration: the Static Sparse Ensemble's runs of Tables 1-2, reused (trained "
                 "as DST with exploration off, they gave bit-identical predictions)."),
          reuses=(*reused("table1", ("dst_m3_s08", "edst_m3_s08"), "_c10", "with exploration"),
                  *reused("table2", ("dst_m3_s08", "edst_m3_s08"), "_c100",
                          "with exploration"),
                  *(Reuse(f"dst_m3_s08_noexplore_{suffix}", f"{folder}/static_m3_s08",
                          "without exploration", method="DST Ensemble")
                    for folder, suffix in (("table1", "c10"), ("table2", "c100"))))),
    Table(6, "Against Snapshot Ensembles and Fast Geometric Ensembling (App. E)", "wide"),
    Table(7, "Per-class prediction disagreement on the first ten CIFAR-100 classes (paper App. "
             "G, Table 7: M = 3, S = 0.8)", "long", Measured("diversity", "class_disagreement"),
          per_class=True,
          notes=(PROTOCOL_NOTE,
                 "By class index and name: the paper's header prints ten words ('Apple "
                 "Aquarium Fish Baby ... Bicycle') over ten columns, while CIFAR-100's classes "
                 "0-9 are apple, aquarium_fish, baby, bear, beaver, bed, bee, beetle, bicycle, "
                 "bottle, so its labels from the second column on may be off by one; each "
                 "paper column k is matched to class k (its printed label in the note).",
                 "Per class: the disagreement over the test images of that class, mean over "
                 "member pairs. At smoke scale (digits) the first ten classes are the digits "
                 "0-9."),
          reuses=reused("table2", ("dst_m3_s08", "edst_m3_s08", "ltr_m3_s08", "static_m3_s08"),
                        "_c100")),
    Table(8, "Sparsity sweep of DST and EDST ensembles (paper §5.4, Figure 4) and the "
             "correlation between mean member accuracy and ensemble accuracy across it (App. "
             "H, Table 8)", "long", Measured("sweep", "sweep_point"),
          across=Measured("sweep", "correlations"),
          notes=(PROTOCOL_NOTE,
                 "Sweep levels S = 0.5, 0.7, 0.8, 0.9, 0.95 at M = 3 (ours: the paper lists "
                 "neither its levels nor M; gin/table8/). The S = 0.8 points are Table 1-2's "
                 "DST and EDST runs, reused by configuration.",
                 "Per point: individual_acc, acc, kl (what Figure 4 draws); pearson and "
                 "spearman (scipy.stats) across the levels of one dataset and method, one "
                 "point per level."),
          reuses=(*reused("table1", ("dst_m3_s08", "edst_m3_s08"), "_c10"),
                  *reused("table2", ("dst_m3_s08", "edst_m3_s08"), "_c100"))),
    Table(9, "Global exploration rate q of EDST (paper App. I, Table 9: M = 3, S = 0.8)",
          "long", DIVERSITY_AND_ACCURACY,
          notes=(PROTOCOL_NOTE,
                 "q = `EDSTEnsemble.escape_fraction`; q = 0.8 is the default, so that row is "
                 "the Table 1-2 EDST run (the paper prints disagreement 0.033 / 0.127 here but "
                 "0.031 / 0.126 in Table 4 for the same setting; its q = 0.5 CIFAR-100 KL "
                 "2.223 is probably 0.223).",)),
    Table(10, "Random vs gradient regrowth in EDST (paper App. J, Table 10: M = 3, S = 0.8)",
          "long", Measured("diversity", "regrowth"),
          notes=(PROTOCOL_NOTE,
                 "Random regrowth = `SparsitySpec.growth = 'random'` (SET), for the regular "
                 "prune-and-grow and the escapes alike; gradient regrowth is the default, the "
                 "Table 1-2 EDST run.",)),
    Table(11, "OoD detection AUROC of models trained on CIFAR-10 (paper App. K, Table 11)",
          "long", Measured("robustness", "ood_cells", (("table", 11),)),
          notes=OOD_NOTES, reuses=reused("table1", OOD_ROWS)),
    Table(12, "OoD detection AUROC of models trained on CIFAR-100 (paper App. K, Table 12)",
          "long", Measured("robustness", "ood_cells", (("table", 12),)),
          notes=OOD_NOTES, reuses=reused("table2", OOD_ROWS)),
    Table(13, "Robust accuracy under FGSM at 8/255 (paper App. L, Table 13)", "long",
          Measured("robustness", "fgsm_cells"),
          notes=(PROTOCOL_NOTE,
                 "min / mean / max over the attacks crafted on each single member of the run "
                 "(App. L); the ensemble is scored on each. M = 1 rows: member 0 of the M = 3 "
                 "(or 7) run scored on the same attacks (one of them its own), not a run of "
                 "their own. A single model has one attack, its own: robust_acc.",
                 "The paper lists M = 1 for the Static ensemble only; ours has it for every "
                 "ensemble row, after the paper's."),
          reuses=(*reused("table1", OOD_ROWS, "_c10"), *reused("table2", OOD_ROWS, "_c100"))),
)

FIGURES = (
    Figure("1", "EDST: one exploration phase, then M refinement phases (a diagram; nothing to "
                "regenerate)"),
    Figure("2-left", "KL divergence between members' intermediate feature maps, per layer "
                     "(CIFAR-100 as in the paper: Table 2's DST, EDST, Static and LTR runs, "
                     "M = 3, S = 0.8)",
           "feature_kl_figure",
           lambda src: (src.rows_of(src.table_runs(2), "dst", "edst", "static", "ltr",
                                    members=3, sparsity=0.8),)),
    Figure("2-right", "Mean pairwise disagreement and KL against the printed values (Table "
                      "1's runs)", "diversity_figure", lambda src: (src.table_runs(1),)),
    Figure("3", "t-SNE of checkpoints along each member's training, DST and EDST (M = 3, "
                "S = 0.8) on CIFAR-10 and CIFAR-100 (runs of gin/figure3/)",
           "trajectory_figure", lambda src: (src.figure_runs("3"),)),
    Figure("4", "Individual and ensemble accuracy and KL against sparsity (Table 8's sweep)",
           "sparsity_figure", lambda src: (src.table_frame(8),)),
    Figure("5", "Ensemble size M up to 7: DST as the first m members of an M = 7 run, EDST at "
                "a fixed total training budget (runs of gin/figure5/)",
           "fixed_budget_figure",
           lambda src: (src.rows_of(src.figure_runs("5"), "dst"),
                        src.rows_of(src.figure_runs("5"), "edst"))),
    Figure("6", "Prediction disagreement between members (Table 1's ensembles)",
           "heatmap_figure", lambda src: (src.table_runs(1), "disagreement",
                                          "Prediction disagreement (paper Fig. 6)")),
    Figure("7", "Prediction disagreement between members (Table 2's ensembles)",
           "heatmap_figure", lambda src: (src.table_runs(2), "disagreement",
                                          "Prediction disagreement (paper Fig. 7)")),
)


@dataclass(frozen=True)
class Catalogue:
    tables: tuple[Table, ...]
    figures: tuple[Figure, ...] = ()

    def table(self, number: int) -> Table:
        found = next((entry for entry in self.tables if entry.number == number), None)
        if found is None:
            raise UserError(f"the catalogue has no table {number}; tables: "
                            f"{', '.join(str(entry.number) for entry in self.tables)}")
        return found

    def with_tables(self, *tables: Table) -> "Catalogue":
        """This catalogue with more tables (a number it has already is replaced)."""
        numbers = {entry.number for entry in tables}
        kept = [entry for entry in self.tables if entry.number not in numbers]
        return Catalogue(tuple(sorted([*kept, *tables], key=lambda entry: entry.number)),
                         self.figures)


PAPER = Catalogue(TABLES, FIGURES)


def load(path: Path | None, gin_dir: Path = DEFAULT_GIN_DIR) -> Catalogue:
    """The paper's catalogue, or the `CATALOGUE` that a Python file of one's own defines, e.g.
    the paper's with a table of one's own rows (`gin/table14/`) and measure:

        from harness.tables.catalogue import PAPER, Table
        CATALOGUE = PAPER.with_tables(Table(14, "My ablation", "long", my_measure))

    A catalogue of one's own is checked here, whole (`check`), not when a table first uses
    it: a mistake in table 14 is said before table 1 trains.
    """
    if path is None:
        return PAPER
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--catalogue {path} is not a file; give a Python file that defines "
                        f"CATALOGUE")
    if path.suffix != ".py":  # importlib finds no loader for any other name
        raise UserError(f"--catalogue {path} is not a Python file (*.py) that defines "
                        f"CATALOGUE")
    spec = importlib.util.spec_from_file_location(f"catalogue_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # a user's file: any error in it is theirs to see in one line
        raise UserError(f"--catalogue {path} fails to load: {first_line(error)}") from error
    found = getattr(module, "CATALOGUE", None)
    if not isinstance(found, Catalogue):
        raise UserError(f"--catalogue {path} defines no CATALOGUE (a harness.tables.catalogue."
                        f"Catalogue)")
    problem = next(iter(problems(found, Path(gin_dir))), None)
    if problem:
        raise UserError(f"--catalogue {path}: {problem}")
    return found


def problems(contents: Catalogue, gin_dir: Path):
    """What is wrong with a catalogue's entries, each in words (none: it is sound)."""
    numbers = set()
    for entry in contents.tables:
        if not isinstance(entry, Table):
            yield f"its tables hold {entry!r}, which is no harness.tables.catalogue.Table"
            continue
        name = f"table {entry.number!r}"
        if isinstance(entry.number, bool) or not isinstance(entry.number, int):
            yield f"{name}: its number must be an integer"
        elif entry.number in numbers:
            yield f"{name} is defined twice (use Catalogue.with_tables to replace a table)"
        numbers.add(entry.number)
        if entry.kind not in TABLE_KINDS:
            yield f"{name} is of kind {entry.kind!r}; one of {', '.join(TABLE_KINDS)}"
        if entry.kind == "long" and not callable(entry.measure):
            yield (f"{name}: a long table's measure must be a function of a run folder, got "
                   f"{entry.measure!r}")
        if entry.across is not None and not callable(entry.across):
            yield f"{name}: across must be a function or None, got {entry.across!r}"
        if entry.reference is not None and not Path(entry.reference).is_file():
            yield f"{name}: its reference {entry.reference} is not a file"
        for reuse in () if entry in PAPER.tables else entry.reuses:  # the paper's: tested
            row = gin_dir / f"{getattr(reuse, 'row', reuse)}.gin"
            if not isinstance(reuse, Reuse):
                yield f"{name} reuses {reuse!r}, which is no harness.tables.catalogue.Reuse"
            elif not row.is_file() or not ROW_LINE.search(row.read_text()):
                yield (f"{name} reuses row {reuse.row}, but {row} is no row file (a gin file "
                       f"with a '# row:' line)")
    keys = set()
    for figure in contents.figures:
        if not isinstance(figure, Figure):
            yield f"its figures hold {figure!r}, which is no harness.tables.catalogue.Figure"
            continue
        if figure.key in keys:
            yield f"figure {figure.key!r} is defined twice"
        keys.add(figure.key)
        if figure.inputs is not None and not callable(figure.inputs):
            yield f"figure {figure.key!r}: inputs must be a function or None"
