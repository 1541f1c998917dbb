"""The run directory (its layout: harness/store/paths.py), written so that a reader never sees
a half-written file, and so that `summary.json`, written last, marks a finished run. A folder
holding anything but what a run writes is not a run: it is never replaced or continued.
"""
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from harness.store import paths, readers
from harness.store.configuration import config_differences
from harness.core.durable import atomic_write, sync_path
from harness.core.errors import UserError
from harness.core.provenance import code_state
from harness.store.readers import METRIC_COLUMNS

if TYPE_CHECKING:  # pandas loads where metrics are written: most commands write none
    import pandas as pd


def is_finished(run_dir: Path) -> bool:
    return paths.summary(run_dir).is_file()


def foreign_entries(run_dir: Path) -> list[str]:
    """Entries of `run_dir` this harness does not write (a run directory has none)."""
    return sorted(entry.name for entry in run_dir.iterdir()
                  if entry.name not in paths.RUN_ENTRIES and not entry.name.endswith(".partial"))


def check_is_run(run_dir: Path) -> None:
    """A run directory of this harness holds its `config.gin` (written first) and nothing but
    what the harness writes; `--overwrite` and `--resume` touch no other folder."""
    foreign = foreign_entries(run_dir)
    if foreign or not paths.config(run_dir).is_file():
        held = (f"it holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}"
                if foreign else f"it has no {paths.CONFIG}")
        raise UserError(f"{run_dir} is not a run directory of this harness ({held}); it is "
                        f"left as it is: choose another --output_dir")


def plan_run_dir(run_dir: Path, *, overwrite: bool, resume: bool, config: str) -> str:
    """What will be done with `run_dir`, decided before anything is written: "create" (it is
    missing or empty), "resume" (an unfinished run of the same configuration `config`, with
    `resume`) or "replace" (a run, with `overwrite`). Anything else is refused."""
    try:
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"output_dir {run_dir} exists and is not a directory")
        if not run_dir.is_dir() or not any(run_dir.iterdir()):
            return "create"
    except OSError as error:
        raise UserError(path_error("output_dir", run_dir, error)) from error
    check_is_run(run_dir)
    if overwrite:
        return "replace"
    if is_finished(run_dir):
        raise UserError(f"{run_dir} already holds a finished run; choose another "
                        f"--output_dir or pass --overwrite to replace it")
    if not resume:
        raise UserError(f"{run_dir} holds an unfinished run; pass --resume to continue it "
                        f"or --overwrite to start over")
    differences = config_differences(readers.config_text(run_dir), config)
    if differences:
        raise UserError(f"{run_dir} was started with another configuration: "
                        f"{'; '.join(differences)}; resume it with the configuration it was "
                        f"started with, or choose another --output_dir")
    return "resume"


def command_line(argv: Sequence[str]) -> str:
    """`argv` as a command to paste: `<python> -m <module> args` where run as a module, the
    interpreter named relative to the working directory when it lies below it (.venv)."""
    python = os.path.relpath(sys.executable)
    python = sys.executable if python.startswith("..") else python
    main = getattr(sys.modules["__main__"], "__spec__", None)
    program = ["-m", main.name] if main is not None else [argv[0]]
    return shlex.join([python, *program, *argv[1:]])


def record_command(run_dir: Path, gin_files: Sequence[str], bindings: Sequence[str]) -> None:
    """The command line of the process, its gin files (as given and resolved) and bindings,
    a copy of each gin file as it was when the run started, and the code it started with
    (commit, dirty, diff hash: harness/core/provenance.py). A module of one's own given by
    `--module` is among the bindings, as gin's `import` (harness/experiment/config.py), so
    that `--resume` with what is recorded here imports it again."""
    copies = []
    for index, file in enumerate(gin_files):
        copy = paths.gin_file_copy(run_dir, index, file)
        copy.parent.mkdir(exist_ok=True)
        write_text(copy, Path(file).read_text())
        copies.append(str(copy.relative_to(run_dir)))
    write_json(paths.command(run_dir), {"command": command_line(sys.argv), "cwd": os.getcwd(),
                                   "gin_files": list(gin_files),
                                   "gin_files_resolved": [str(Path(file).resolve())
                                                          for file in gin_files],
                                   "gin_file_copies": copies, "gin_bindings": list(bindings),
                                   "code": code_state(), "resumed": []})


def record_resume(run_dir: Path) -> None:
    """Adds this continuation's command line and code (harness/core/provenance.py) to the
    run's command.json, so that an unfinished run knows every code it was trained with. A run
    that recorded no command (an earlier version's) is left as it is."""
    try:
        recorded = readers.command(run_dir)
    except (FileNotFoundError, readers.DamagedRecord):
        return
    recorded.setdefault("resumed", []).append({"command": command_line(sys.argv),
                                               "code": code_state()})
    write_json(paths.command(run_dir), recorded)


def recorded_configuration(run_dir: Path) -> tuple[list[str], list[str]]:
    """The gin files (resolved) and bindings a run was started with (`record_command`)."""
    try:
        recorded = readers.command(run_dir)
    except FileNotFoundError:
        raise UserError(f"{run_dir} records no command ({paths.COMMAND}): it is no run "
                        f"directory, or was started before runs recorded theirs; give its "
                        f"--gin_file and --gin_bindings to resume it") from None
    return recorded["gin_files_resolved"], recorded["gin_bindings"]


def path_error(setting: str, path: Path, error: OSError) -> str:
    return f"{setting} {path} is unusable ({error.strerror}); choose another path"


def make_run_dir(run_dir: Path) -> bool:
    """Creates `run_dir` (or reuses it); returns True when it was created now."""
    existed = run_dir.is_dir()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = paths.write_probe(run_dir)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to output_dir {run_dir} ({error.strerror}); choose a "
                        f"writable --output_dir") from error
    return not existed


def staging_dir(run_dir: Path) -> Path:
    """Where `--overwrite` builds the new run beside the old one (`.<name>.new`). Leftovers of
    an interrupted `--overwrite` there and in `.<name>.old` (see `swap_in`) are runs written
    here, and are cleared; any other folder of those names is refused."""
    for leftover in (paths.staging(run_dir), paths.retired(run_dir)):
        if leftover.is_dir():
            if any(leftover.iterdir()):
                check_is_run(leftover)
            shutil.rmtree(leftover)
    return paths.staging(run_dir)


def swap_in(staging: Path, run_dir: Path) -> None:
    """Replaces the run `run_dir` by the finished run `staging`; the old run is set aside
    (`.<name>.old`) before it is deleted, so a crash in between loses neither."""
    os.replace(run_dir, paths.retired(run_dir))
    os.replace(staging, run_dir)
    sync_path(run_dir.parent)
    shutil.rmtree(paths.retired(run_dir))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)
                                                   + "\n"))


def metrics_frame(rows: list[dict]) -> "pd.DataFrame":
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    frame["severity"] = frame["severity"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    return frame


def write_metrics(path: Path, rows: list[dict]) -> None:
    atomic_write(path, lambda tmp: metrics_frame(rows).to_parquet(tmp, engine="pyarrow",
                                                                   index=False))
