"""A damaged run among the others (harness/store/readers.py): the table, `harness.compare` and
the compute plan skip it and name it, and go on; a catalogue is checked whole when it is
loaded; the plan's throughput file, when named, must be there."""
import json
from pathlib import Path

import pandas as pd
import pytest

from harness import compare as compare_command
from harness.core.errors import UserError
from harness.store import paths
from harness.store.record import write_json
from harness.tables import make as tables_command
from harness.tables import report as report_command
from harness.tables.catalogue import load
from tests.fakes import ROOT, stored_run
from tests.tables.test_compare import my_run


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_a_table_skips_a_damaged_seed_names_it_and_keeps_the_others(tmp_path, capsys):
    stored_run(tmp_path, 1, "dense", members=1, acc=0.90)
    torn = stored_run(tmp_path, 1, "dense", seed=1, members=1, acc=0.94)
    paths.metrics(torn).write_bytes(paths.metrics(torn).read_bytes()[:100])
    code = report_command.main(["--table=1", "--scale=smoke", f"--runs_dir={tmp_path}",
                                f"--output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (f"skipped damaged run: {paths.metrics(torn)} is damaged (not a readable parquet "
            f"file") in err and f"delete {torn} and run it again" in err
    frame = pd.read_parquet(tmp_path / "out" / "table1.parquet")
    dense = frame[frame.row == "dense"].iloc[0]
    assert dense.seeds == 1 and dense.acc == pytest.approx(90.0)


def test_a_table_of_damaged_runs_only_names_the_damage(tmp_path, capsys):
    run = stored_run(tmp_path, 1, "dense", members=1)
    paths.summary(run).write_text('{"method": "dense"}')
    code = report_command.main(["--table=1", "--scale=smoke", f"--runs_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"no readable finished run for table 1: {paths.summary(run)} is damaged" in err


def test_the_table_command_does_not_train_over_a_damaged_run(tmp_path, capsys):
    run = stored_run(tmp_path, 1, "dense", members=1)
    write_json(paths.summary(run), {"metrics": {}})
    code = tables_command.main(["--table=1", "--rows=dense", "--scale=smoke",
                                f"--runs_dir={tmp_path}", f"--output_dir={tmp_path / 'out'}",
                                "--noprogress"])
    out = capsys.readouterr().out
    assert code == 2  # the table has no other finished row
    assert f"  skipped: damaged: {paths.summary(run)} is damaged (no 'method')" in out
    assert json.loads(paths.summary(run).read_text()) == {"metrics": {}}


def test_compare_skips_a_damaged_run_in_one_line_and_compares_the_rest(tmp_path, capsys):
    good = my_run(tmp_path / "mine" / "a", "dense", 0, 0.90, "Single Dense Model", members=1)
    torn = my_run(tmp_path / "mine" / "b", "dense", 1, 0.94, "Single Dense Model", members=1)
    paths.summary(torn).write_text('{"method": "dense", "metrics": {}}')
    code = compare_command.main([str(tmp_path / "mine"),
                                 f"--output_dir={tmp_path / 'out'}"])
    captured = capsys.readouterr()
    assert code == 0
    assert f"skipped damaged run: {paths.summary(torn)} is damaged (no 'dataset')" in captured.err
    frame = pd.read_parquet(tmp_path / "out" / "compare.parquet")
    assert frame.run_dirs.tolist() == [str(good)]


def test_compare_of_damaged_runs_only_is_one_line_and_exit_2(tmp_path, capsys):
    torn = my_run(tmp_path / "mine" / "a", "dense", 0, 0.90, "Single Dense Model", members=1)
    paths.metrics(torn).write_bytes(b"PAR1")
    code = compare_command.main([str(torn)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: no readable finished run to compare: {paths.metrics(torn)} "
                          f"is damaged (not a readable parquet file")


def test_the_plan_says_damaged_and_counts_it_still_to_run(tmp_path, capsys):
    run = stored_run(tmp_path, 1, "dense", members=1)
    paths.flops(run).write_text("{")
    code = tables_command.main(["--plan", "--table=1", "--scale=smoke",
                                f"--runs_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"[damaged]: {paths.flops(run)} is damaged (not JSON" in out


def test_an_absent_throughput_file_named_is_one_line(tmp_path, capsys):
    code = tables_command.main(["--plan", "--table=1", "--scale=smoke",
                                f"--runs_dir={tmp_path}",
                                f"--throughput={tmp_path / 'gpu_check.json'}"])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"error: --throughput {tmp_path / 'gpu_check.json'} does not "
                                 f"exist: run `make gpu-check` to write it, or leave the flag "
                                 f"out to use build/gpu_check/gpu_check.json or an assumed "
                                 f"rate\n")


def catalogue_file(tmp_path: Path, tables: str) -> Path:
    path = tmp_path / "my_tables.py"
    path.write_text("from harness.tables.catalogue import PAPER, Reuse, Table\n"
                    f"CATALOGUE = PAPER.with_tables({tables})\n")
    return path


@pytest.mark.parametrize("tables, problem", [
    ("Table(14, 'Mine', 'long', 'diversity')",
     "table 14: a long table's measure must be a function of a run folder, got 'diversity'"),
    ("Table(14, 'Mine', 'wide', reuses=(Reuse('x', 'table1/nowhere'),))",
     "table 14 reuses row table1/nowhere, but gin/table1/nowhere.gin is no row file (a gin "
     "file with a '# row:' line)"),
    ("Table(14, 'Mine', 'tall')", "table 14 is of kind 'tall'; one of wide, long"),
])
def test_a_catalogue_is_checked_whole_when_loaded(tmp_path, tables, problem):
    with pytest.raises(UserError) as refused:
        load(catalogue_file(tmp_path, tables))
    assert str(refused.value) == f"--catalogue {tmp_path / 'my_tables.py'}: {problem}"


@pytest.mark.parametrize("tables, problem", [
    ("PAPER.tables + (Table(6, 'Again', 'wide'),)", "table 6 is defined twice"),
    ("(Table('14', 'Mine', 'wide'),)", "table '14': its number must be an integer"),
])
def test_a_catalogue_built_by_hand_is_checked_too(tmp_path, tables, problem):
    path = tmp_path / "by_hand.py"
    path.write_text("from harness.tables.catalogue import PAPER, Catalogue, Table\n"
                    f"CATALOGUE = Catalogue({tables})\n")
    with pytest.raises(UserError, match=problem):
        load(path)
