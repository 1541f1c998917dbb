"""The run store: every run of the harness filed by its configuration, so that the same
configuration is the same run wherever a table, a figure or a user asks for it (as open_lth
names its runs by a hash of their hyperparameters).

    <runs_dir>/<method>-<configuration id>/seed<k>/   one run, its records beside it
                                                      (harness/store/paths.py)

The configuration id is a hash of the run's operative configuration, defaults included, but
its seed and the settings that only observe (harness/store/configuration.py
`configuration_id`), so the seeds of one configuration sit side by side. `store.json` at the
top records the store's format (`STORE_FORMAT`): a store of an earlier format (one with
configuration folders but no `store.json` was filed by explicit bindings alone) is refused
until `python -m harness.migrate_runs` has moved its runs to their new ids. This module is the
only one that names the store's folders (the files in and beside a run: harness/store/paths.py);
everything else asks it. Beside a run it keeps why its last attempt could not start (e.g. its
data set is not on disk). Runs in the layout of earlier versions
(`<runs_dir>/table<N>/<scale>/<row>/seed<k>/`) are moved in by `python -m harness.migrate_runs`;
until then the store refuses to read them.
"""
import re
from pathlib import Path

from harness.store.configuration import (ID_LENGTH, STORE_FORMAT, configuration_id, method_of,
                                         seed_of)
from harness.core.errors import UserError
from harness.store import paths, readers
from harness.store.record import is_finished, write_json

ENTRY = re.compile(r"^[a-z0-9_]+-[0-9a-f]{%d}$" % ID_LENGTH)
SEED_ENTRY = re.compile(r"^seed(\d+)(\.[a-z]+\.json)?$")  # a run, or a record beside one
OLD_LAYOUT = ("table*/*/*/seed*", "figure*/*/*/seed*")
FIRST_FORMAT = 1  # what a store without its format record but with configuration folders is


class RunStore:
    """The runs under one folder."""

    def __init__(self, runs_dir: Path):
        self.root = Path(runs_dir)

    def configuration_dir(self, config: str) -> Path:
        return self.root / f"{method_of(config)}-{configuration_id(config)}"

    def find(self, config: str, seed: int | None = None) -> Path:
        """Where the run of `config` (its own seed, or `seed`) is or would be; writes nothing."""
        self.check_layout()
        return self.configuration_dir(config) / f"seed{seed_of(config) if seed is None else seed}"

    def run_dir(self, config: str, seed: int | None = None) -> Path:
        """Where the run of `config` will be trained: `find`'s place, in a store whose format
        is recorded before its first run is (a store without `store.json` but with runs is
        taken for format 1)."""
        place = self.find(config, seed)
        self.record_format()
        return place

    def seeds(self, config: str, seeds: int | None = None) -> list[Path]:
        """The run folders of `config`'s seeds 0..seeds-1, or of every seed present (None): a
        run folder, or a record beside one that never started (a failure, an error)."""
        folder = self.configuration_dir(config)
        if seeds is not None:
            return [folder / f"seed{k}" for k in range(seeds)]
        self.check_layout()
        found = {int(match.group(1)) for path in folder.glob("seed*")
                 if (match := SEED_ENTRY.match(path.name))}
        return [folder / f"seed{k}" for k in sorted(found)]

    def runs(self) -> list[Path]:
        """Every run folder in the store, finished or not."""
        self.check_layout()
        return sorted(path for folder in self.configuration_dirs()
                      for path in folder.glob("seed*")
                      if path.is_dir() and path.name[4:].isdigit())

    def finished(self) -> list[Path]:
        return [path for path in self.runs() if is_finished(path)]

    def configuration_dirs(self) -> list[Path]:
        return sorted(folder for folder in self.root.glob("*-*")
                      if ENTRY.match(folder.name) and folder.is_dir())

    def format(self) -> int:
        """The format the store's runs are filed by (`STORE_FORMAT` for a new store)."""
        recorded = readers.store_format(self.root)
        if recorded is None:
            return FIRST_FORMAT if self.configuration_dirs() else STORE_FORMAT
        return recorded

    def record_format(self) -> None:
        """Writes `store.json` into a store that has none (a new one: `check_layout` passed)."""
        if not paths.store_format(self.root).exists():
            self.root.mkdir(parents=True, exist_ok=True)
            write_json(paths.store_format(self.root), {"format": STORE_FORMAT})

    def check_layout(self) -> None:
        """A UserError when runs of an earlier layout or format are under the store's folder."""
        found = self.format()
        if found > STORE_FORMAT:
            raise UserError(f"{self.root} is a run store of format {found}, written by a newer "
                            f"version of the harness (this one reads format {STORE_FORMAT})")
        if found < STORE_FORMAT:
            raise UserError(f"{self.root} holds runs filed by the ids of store format {found} "
                            f"(this version's is {STORE_FORMAT}): move them to their new ids "
                            f"with `python -m harness.migrate_runs --runs_dir={self.root}`")
        old = next((path for pattern in OLD_LAYOUT for path in self.root.glob(pattern)
                    if paths.config(path).is_file()), None)
        if old is not None:
            raise UserError(f"{self.root} holds runs in the layout of earlier versions (e.g. "
                            f"{old}): move them into the run store with `python -m "
                            f"harness.migrate_runs --runs_dir={self.root}`")


def record_error(run_dir: Path, error: str) -> None:
    """Why the last attempt at `run_dir` could not start; it does not block the next one, and
    a store it cannot be written into (read-only) goes without it: the error itself is said."""
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        write_json(paths.error_record(run_dir), {"error": error})
    except OSError:
        pass


def clear_error(run_dir: Path) -> None:
    paths.error_record(run_dir).unlink(missing_ok=True)
