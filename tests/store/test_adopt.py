"""`python -m harness.adopt` (harness/store/adopt.py): a run made with `harness.run
--output_dir` filed into the run store, where the tables and `harness.compare` reuse it as
their own; never over another run, never a run that is unfinished, damaged, being trained or
trained under defaults this code no longer has; nothing written where it is refused."""
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import harness.experiment.assemble  # noqa: F401  every configurable: a run's place needs them
from harness.adopt import main
from harness.run import main as run_main, store_place
from harness.core import provenance
from harness.store import paths
from harness.store.locks import training_lock
from harness.store.runs import RunStore
from harness.tables import catalogue
from harness.tables.compare import load_runs
from harness.tables.context import TableContext
from harness.tables.rows import table_rows
from harness.tables.run_rows import run_seed
from harness.tables.sources import row_configuration, row_runs
from tests.fakes import fake_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def context(tmp_path) -> TableContext:
    return TableContext("smoke", RunStore(tmp_path / "runs"), gin_dir=ROOT / "gin", seeds=1)


@pytest.fixture
def row(context):
    [dense] = [row for row in table_rows(catalogue.PAPER.table(1), context)
               if row.name == "dense"]
    return dense


def own_run(run_dir: Path, row, recorded: str = "", **run) -> Path:
    """A finished run of Table 1's dense row as `python -m harness.run --gin_file=...
    --output_dir=<run_dir>` leaves it (no seed given), made without training; `recorded`: more
    lines of the operative configuration it was trained with."""
    config = row_configuration(row)
    fake_run(run_dir, method="dense", members=1, **run)
    (run_dir / "config.gin").write_text(config)
    (run_dir / "operative_config.gin").write_text(config + recorded)
    return run_dir


def tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def adopt(capsys, *argv) -> tuple[int, list[str], list[str]]:
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def test_an_adopted_run_is_the_one_the_tables_and_compare_find(tmp_path, row, context,
                                                               capsys):
    mine = own_run(tmp_path / "mine", row)
    before = tree(mine)
    status, out, err = adopt(capsys, mine, f"--runs_dir={context.store.root}")
    place = context.store.find(row_configuration(row), 0)
    drift = provenance.drift("abc1234").text  # the fake run's commit: not this checkout's
    assert (status, out, err) == (0, [f"adopted {mine} -> {place} ({drift})"], [])
    assert tree(place) == before and tree(mine) == before  # copied as it was, kept
    assert (context.store.root / "store.json").is_file()
    assert row_runs(row, context.store, 1).finished == [place]
    assert run_seed(row, 0, context, progress=False).startswith(f"reused {place}")
    assert list(load_runs([str(context.store.root)]).run_dir) == [str(place)]


def test_adopting_again_is_one_line_and_another_run_there_is_refused(tmp_path, row, context,
                                                                     capsys):
    mine = own_run(tmp_path / "mine", row)
    runs = f"--runs_dir={context.store.root}"
    assert adopt(capsys, mine, runs)[0] == 0
    place = context.store.find(row_configuration(row), 0)
    assert adopt(capsys, mine, runs) == (0, [f"already in the store: {place}"], [])
    assert adopt(capsys, place, runs) == (0, [f"already in the store: {place}"], [])
    stored = tree(context.store.root)
    other = own_run(tmp_path / "other", row, acc=0.5)
    status, out, err = adopt(capsys, other, runs)
    assert (status, out) == (2, []) and len(err) == 1
    assert err[0].startswith(f"error: already in the store: {place} holds another finished "
                             f"run")
    assert tree(context.store.root) == stored and other.is_dir()


def spoil_default(run: Path) -> str:
    recorded = run / "operative_config.gin"  # trained when Trainer.nesterov defaulted to True
    recorded.write_text(recorded.read_text() + "Trainer.nesterov = True\n")
    return "Trainer.nesterov (True recorded, False now)"


def spoil_finish(run: Path) -> str:
    (run / "summary.json").unlink()
    return (f"is unfinished (no summary.json): finish it with `python -m harness.run --resume "
            f"--output_dir={run}`")


def spoil_records(run: Path) -> str:
    (run / "metrics.parquet").write_text("cut short")
    return "metrics.parquet is damaged (not a readable parquet file"


def spoil_with_a_file(run: Path) -> str:
    (run / "notes.txt").write_text("mine")
    return "is not a run directory of this harness (it holds notes.txt)"


@pytest.mark.parametrize("spoil", [spoil_default, spoil_finish, spoil_records,
                                   spoil_with_a_file])
def test_a_run_that_cannot_be_adopted_is_one_line_and_nothing_is_written(tmp_path, row,
                                                                          context, spoil,
                                                                          capsys):
    good = own_run(tmp_path / "good", row, seed=1)
    (good / "config.gin").write_text(row_configuration(row, ["Experiment.seed = 1"]))
    mine = own_run(tmp_path / "mine", row)
    reason = spoil(mine)
    before = tree(tmp_path)
    status, out, err = adopt(capsys, good, mine, f"--runs_dir={context.store.root}")
    assert (status, out, len(err)) == (2, [], 1) and reason in err[0], err
    assert tree(tmp_path) == before and not context.store.root.exists()  # good is held too


def test_a_run_being_trained_is_refused_naming_its_trainer(tmp_path, row, context, capsys):
    mine = own_run(tmp_path / "mine", row)
    runs = f"--runs_dir={context.store.root}"
    with training_lock(mine):
        status, _, err = adopt(capsys, mine, runs)
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"error: {mine} is being trained by pid {os.getpid()} on ")
    place = context.store.run_dir(row_configuration(row), 0)
    with training_lock(place):  # the store trains this configuration and seed itself
        before = tree(context.store.root)
        status, _, err = adopt(capsys, mine, runs)
        assert status == 2 and err[0].startswith(f"error: {place} is being trained by pid "
                                                 f"{os.getpid()}")
        assert tree(context.store.root) == before


def test_move_removes_the_run_only_once_its_copy_is_in_place(tmp_path, row, context, capsys,
                                                              monkeypatch):
    mine = own_run(tmp_path / "mine", row)
    before = tree(mine)
    place = context.store.find(row_configuration(row), 0)
    runs = f"--runs_dir={context.store.root}"

    def interrupted(source, target):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "copy2", interrupted)
        assert adopt(capsys, mine, runs, "--move")[0] == 130
    assert tree(mine) == before and not place.exists()
    assert not paths.staging(place).exists()  # the half copy is gone

    removed = []
    rmtree = shutil.rmtree

    def seen_removing(path, *args, **kwargs):
        removed.append((Path(path), tree(place)))
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", seen_removing)
    assert adopt(capsys, mine, runs, "--move")[1][0].startswith(f"moved {mine} -> {place}")
    assert removed == [(mine, before)] and not mine.exists()


@pytest.mark.parametrize("flag", ["--dry_run", "--nodry_run"])
def test_two_runs_of_one_place_are_refused(tmp_path, row, context, capsys, flag):
    first, second = (own_run(tmp_path / name, row) for name in ("first", "second"))
    status, _, err = adopt(capsys, first, second, f"--runs_dir={context.store.root}", flag)
    assert status == 2 and err[0].startswith(f"error: {first} and {second} are runs of one "
                                             f"configuration and seed")
    assert not context.store.root.exists()


def test_run_trains_into_the_stores_place_with_store(tmp_path, row, context, capsys):
    """`harness.run --store` names the place `harness.adopt` would file the run in: the
    place the tables look for it."""
    files = [f"--gin_file={file}" for file in row.gin_files]
    status = run_main([*files, f"--store={context.store.root}", f"--output_dir={tmp_path / 'x'}"])
    assert (status, capsys.readouterr().err) == (
        2, "error: give --store or --output_dir, not both: the store names the folder\n")
    mine = own_run(tmp_path / "mine", row)
    assert adopt(capsys, mine, f"--runs_dir={context.store.root}", "--dry_run")[1] == [
        f"would be adopted {mine} -> {context.store.find(row_configuration(row), 0)} "
        f"({provenance.drift('abc1234').text})"]
    args = SimpleNamespace(store=context.store.root, output_dir=None, dry_run=True)
    assert store_place(list(row.gin_files), [], args) == str(
        context.store.find(row_configuration(row), 0))
    assert not context.store.root.exists() and not (tmp_path / "x").exists()
    # once the store holds the run, `--store` reuses it as the tables would: nothing trains
    assert adopt(capsys, mine, f"--runs_dir={context.store.root}")[0] == 0
    assert run_main([*files, f"--store={context.store.root}"]) == 0
    place = context.store.find(row_configuration(row), 0)
    assert capsys.readouterr().out == (f"already in the store, finished: {place} (--overwrite "
                                       f"trains it again)\n")


def test_help_imports_no_torch(tmp_path):
    script = "import sys; from harness.adopt import main; main(['--help']); print(sorted(" \
             "name for name in sys.modules if name.split('.')[0] in ('torch', 'methods')))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "[]", done.stderr
