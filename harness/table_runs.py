"""The rows of the paper's tables and figures and their runs: finding a folder's rows
(`folder_rows`), running or reusing each seed (`run_seed`), and a whole table (`run_table`),
as `python -m harness.tables` (harness/tables.py, where the conventions are described) does."""
import json
import re
from dataclasses import dataclass
from pathlib import Path

import gin

from harness.config import config_differences, parse
from harness.errors import UserError, first_line
from harness.record import is_finished, write_json
from harness.report import ROW_FILE, report, table_runs
from harness.run_lock import Busy, failure_path, read_record, training_lock, waiting_job

ROW_LINE = re.compile(r"^#\s*row:\s*(\S.*?)\s*$", re.MULTILINE)
SETTING_LINE = re.compile(r"^#\s*setting:\s*(\S.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class TableRow:
    name: str  # the row's gin file stem; its folder under the runs
    method: str  # the paper's name for it
    gin_files: tuple[str, ...]  # its own file first, then scale and extras
    setting: str | None = None  # its `# setting:` (ablation rows), as in the reference


def paper_name(config: Path) -> str | None:
    """The `# row:` name of a row file; None for a file without one (an include of rows)."""
    match = ROW_LINE.search(config.read_text())
    return None if match is None else match.group(1)


def row_setting(config: Path) -> str | None:
    """The `# setting:` of a row file; None for a row of the main setting."""
    match = SETTING_LINE.search(config.read_text())
    return None if match is None else match.group(1)


def scale_files(folder: str, scale: str, gin_dir: Path) -> list[str]:
    """The scale's layers over a row of `gin_dir/<folder>/` (a table's or a figure's): the
    general scale file, then the folder's own `scale/<scale>.gin` if it has one."""
    general = gin_dir / "scale" / f"{scale}.gin"
    if scale != "paper" and not general.is_file():
        known = ["paper", *sorted(path.stem for path in (gin_dir / "scale").glob("*.gin"))]
        raise UserError(f"unknown scale {scale!r}; known: {', '.join(known)}")
    own = gin_dir / folder / "scale" / f"{scale}.gin"
    return [str(path) for path in (general, own) if path.is_file()]


def folder_rows(folder: str, scale: str, gin_dir: Path, extra_files=()) -> list[TableRow]:
    """The rows of `gin_dir/<folder>/` (files with a `# row:` line), each layered with the
    scale (`scale_files`), then its own `<folder>/scale/<scale>/<row>.gin` if there is one
    (e.g. a CIFAR-100 row that must stay on CIFAR-100 where the scale picks CIFAR-10)."""
    named = {config: paper_name(config)
             for config in sorted((gin_dir / folder).glob("*.gin"))}
    layers = scale_files(folder, scale, gin_dir)
    own = gin_dir / folder / "scale" / scale
    return [TableRow(config.stem, name,
                     (str(config), *layers,
                      *[str(path) for path in [own / config.name] if path.is_file()],
                      *extra_files), row_setting(config))
            for config, name in named.items() if name]


def table_rows(table: int, scale: str, gin_dir: Path, extra_files=()) -> list[TableRow]:
    rows = folder_rows(f"table{table}", scale, gin_dir, extra_files)
    if not rows:
        raise UserError(f"table {table} has no rows: no gin file in {gin_dir}/table{table}/ "
                        f"has a '# row: <method as in the reference table>' line")
    return rows


def same_configuration(runs_dir: Path, scale: str, seed: int, config: str) -> list[Path]:
    """The runs (finished or not; tables' first, each in path order) of any table or figure at
    `scale` and `seed` under `runs_dir` whose recorded configuration has no binding that
    differs from `config`."""
    candidates = [*sorted(runs_dir.glob(f"table*/{scale}/*/seed{seed}")),
                  *sorted(runs_dir.glob(f"figure*/{scale}/*/seed{seed}"))]
    return [run_dir for run_dir in candidates if (run_dir / "config.gin").is_file()
            and not config_differences((run_dir / "config.gin").read_text(), config)]


def record_row(row: TableRow, row_dir: Path, bindings: list[str], reused: dict | None = None,
               error: str = "") -> None:
    """The row's `row.json`: its identity and layering, the seeds it reuses from other rows'
    runs ({seed: path relative to the runs folder}) and, for a row that could not run, why."""
    path = row_dir / ROW_FILE
    before = json.loads(path.read_text()).get("reused", {}) if path.is_file() else {}
    row_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, {"row": row.name, "method": row.method, "setting": row.setting,
                      "gin_files": list(row.gin_files), "bindings": bindings,
                      "reused": {**before, **(reused or {})},
                      **({"error": error} if error else {})})


def run_seed(row: TableRow, seed: int, bindings: list[str], row_dir: Path,
             progress: bool, train=None) -> str:
    """Runs (or reuses) one seed of a row; returns what happened, for the log. `row_dir` is
    `<runs_dir>/table<N>/<scale>/<row>`. The run trains under its lock (harness/run_lock.py):
    a run another process trains, or one the launcher queued, is skipped and named as such.
    `train(gin_files, bindings, run_dir, progress)` trains it (default: in this process;
    harness/launch.py passes torchrun for a run of several GPUs)."""
    import harness.experiment  # noqa: F401  torch, `Experiment` and the methods load here
    from methods import METHODS

    bindings = [*bindings, f"Experiment.seed = {seed}"]
    parse(row.gin_files, bindings)
    method = gin.query_parameter("Experiment.method")
    if method not in METHODS.names():
        return f"skipped: method {method!r} is not built yet"
    run_dir = row_dir / f"seed{seed}"
    config = gin.config_str()
    if is_finished(run_dir):
        recorded = run_dir / "config.gin"
        differences = (config_differences(recorded.read_text(), config)
                       if recorded.is_file() else ["no config.gin recorded"])
        if differences:
            raise UserError(f"{run_dir} is a finished run of another configuration than "
                            f"{' + '.join(row.gin_files)} gives now ({'; '.join(differences)})"
                            f"; remove it to run again")
        return "reused"
    runs_dir = row_dir.parents[2]
    twins = same_configuration(runs_dir, row_dir.parent.name, seed, config)
    same = next((twin for twin in twins if is_finished(twin)), None)
    if same is not None:
        record_row(row, row_dir, bindings[:-1],
                   {str(seed): same.relative_to(runs_dir).as_posix()})
        return f"reused {same} (the same configuration)"
    if twins and not run_dir.is_dir():  # training elsewhere now, or interrupted there
        waiting = (f"{twins[0]} is an unfinished run of the same configuration: finish it "
                   f"(run its own table again), then this table reuses it")
        record_row(row, row_dir, bindings[:-1], error=waiting)
        return f"skipped: {waiting}"
    failed = read_record(failure_path(run_dir))
    if failed is not None:
        why = (f"failed: {failed['error']} (log {failed['log']}); fix it, then remove "
               f"{failure_path(run_dir)} or launch with --retry_failed")
        record_row(row, row_dir, bindings[:-1], error=why)
        return f"skipped: {why}"
    queued = waiting_job(run_dir)
    if queued:
        record_row(row, row_dir, bindings[:-1], error=queued)
        return f"skipped: {queued}"
    try:
        with training_lock(run_dir):
            if not is_finished(run_dir):  # another job may have finished it meanwhile
                (train or train_here)(row.gin_files, bindings, run_dir, progress)
            failure_path(run_dir).unlink(missing_ok=True)
    except Busy as busy:
        record_row(row, row_dir, bindings[:-1], error=f"running: {busy}")
        return f"skipped: running: {busy}"
    except BaseException:
        if run_dir.is_dir():  # interrupted: the report names it
            record_row(row, row_dir, bindings[:-1])
        raise
    record_row(row, row_dir, bindings[:-1])
    return "ran"


def train_here(gin_files, bindings, run_dir: Path, progress: bool) -> None:
    """Trains (or resumes) one run in this process."""
    from harness.execute import run_experiment

    run_experiment(gin_files, bindings, output_dir=str(run_dir), resume=True,
                   progress=progress)


def chosen_rows(rows: list[TableRow], names: list[str] | None) -> list[TableRow]:
    """The rows named (gin file stems), in table order; all of them without names."""
    if not names:
        return rows
    unknown = sorted(set(names) - {row.name for row in rows})
    if unknown:
        raise UserError(f"--rows names no row of this table: {', '.join(unknown)}; rows: "
                        f"{', '.join(row.name for row in rows)}")
    return [row for row in rows if row.name in names]


def run_table(table: int, scale: str, seeds: int, *, gin_dir: Path = Path("gin"),
              runs_dir: Path = Path("runs"), output_dir: Path = Path("reports"),
              extra_files=(), bindings=(), progress: bool = True,
              rows: list[str] | None = None) -> Path:
    """Runs every row (or the `rows` named) and seed of the table, then writes it; returns the
    markdown path. A long-format table (4 and up) runs on past a row that cannot run (e.g.
    CIFAR-100 absent at cpu scale): the table is written with that row's numbers missing and
    its reason, then one UserError names every such row."""
    from harness.long_tables import TABLES as LONG_TABLES
    from harness.robustness_tables import rescore_phase

    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    failed = []
    for row in chosen_rows(table_rows(table, scale, gin_dir, extra_files), rows):
        row_dir = runs_dir / f"table{table}" / scale / row.name
        for seed in range(seeds):
            print(f"table {table} [{scale}] {row.name} seed {seed}", flush=True)
            try:
                outcome = run_seed(row, seed, list(bindings), row_dir, progress)
            except UserError as error:
                if table not in LONG_TABLES:
                    raise
                record_row(row, row_dir, list(bindings), error=first_line(error))
                failed.append(f"{row.name} ({first_line(error)})")
                outcome = f"skipped: error: {first_line(error)}"
            print(f"  {outcome}", flush=True)
            if outcome.startswith("skipped"):
                break
    # Rescoring is a phase of its own: the table below only reads what it leaves.
    rescore_phase(table, [run for row in table_runs(runs_dir, table, scale, seeds, False)
                          if not rows or row.name in rows for run in row.finished], progress)
    written = report(table, scale, runs_dir, output_dir, seeds)
    if failed:
        raise UserError(f"{len(failed)} row(s) could not run; {written} shows them missing: "
                        f"{'; '.join(failed)}")
    return written
