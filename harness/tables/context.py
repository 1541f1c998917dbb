"""What a table (or the page's figures) is made in: the scale its rows run at, where their gin
files are, what is layered over every row, the run store and the seeds. It is built once, from
the command line (`python -m harness.tables`, `harness.report`, `harness.figures`,
`harness.paper`, `harness.launch`), and handed down whole, so that every function that finds a
row's files or runs sees the same ones and the defaults live here alone."""
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.store.runs import RunStore

DEFAULT_GIN_DIR = Path("gin")
DEFAULT_RUNS_DIR = Path("runs")


@dataclass(frozen=True)
class TableContext:
    scale: str = "paper"  # the scale the rows run at (a table's own, e.g. Table 3's `tiny`)
    store: RunStore = field(default_factory=lambda: RunStore(DEFAULT_RUNS_DIR))
    gin_dir: Path = DEFAULT_GIN_DIR  # gin/<folder>/ are the rows, gin/scale/ the scales
    extra_files: tuple[str, ...] = ()  # layered after the scale over every table row
    bindings: tuple[str, ...] = ()  # applied after every file
    seeds: int | None = None  # seeds 0..seeds-1 of each row; None: every seed present

    def __post_init__(self):
        # Flags and callers hand lists; a frozen context keeps them as tuples.
        object.__setattr__(self, "gin_dir", Path(self.gin_dir))
        object.__setattr__(self, "extra_files", tuple(self.extra_files))
        object.__setattr__(self, "bindings", tuple(self.bindings))

    def at_scale(self, scale: str) -> "TableContext":
        return replace(self, scale=scale)

    def for_table(self, entry) -> "TableContext":
        """This context (of the page's scale) at the scale the catalogue table's rows run at
        (harness/tables/catalogue.py `Table.scale`: Table 3 at `tiny` for the smoke page)."""
        return self.at_scale(entry.scale(self.scale))

    def without_extras(self) -> "TableContext":
        """The figures' own rows are layered with no extra files or bindings: the page runs
        them with none (harness/paper/build.py)."""
        return replace(self, extra_files=(), bindings=())
