"""Sweeps through the launcher (`python -m harness.launch --sweep=... --seeds=...`,
harness/tables/binding_sweep.py): values split at the commas outside brackets and quotes, the
cross product of several --sweep flags, the seeds' two forms; every mistake one line naming the
--sweep, exit 2, nothing created; the plan lists the runs and trains nothing; the status line;
and a real sweep of 2 values x 2 seeds at smoke scale: 4 runs in the store with their bindings,
their comparison written, a second launch reusing all 4 (about 40 s on a 2-core machine)."""
import io
from pathlib import Path

import pandas as pd
import pytest

from harness.core.errors import UserError
from harness.core.progress import StatusLine
from harness.store import readers
from harness.store.configuration import bindings
from harness.store.runs import RunStore
from harness.tables import compute_plan, launch
from harness.tables.binding_sweep import Sweep, seed_list, split_values, swept_binding
from harness.tables.compute_plan import PlannedRun
from harness.tables.context import TableContext
from harness.tables.launch_status import LaunchStatus
from harness.tables.rows import TableRow

ROOT = Path(__file__).resolve().parents[2]
DENSE_SMOKE = ["--gin_file=gin/dense.gin", "--gin_file=gin/scale/smoke.gin"]
# Two epochs on 192 digits, clean test set only, no wall-clock rows (tests/tables/test_launch.py).
FAST = ["Experiment.train_subset = 192", "epoch_factor.factor = 0.008",
        "Experiment.suites = ('test',)", "Experiment.device = 'cpu'",
        "inference_timing.enabled = False"]


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the gin files are named relative to the repository


def sweep_launch(tmp_path, *flags):
    return launch.main([*DENSE_SMOKE, *(f"--gin_bindings={binding}" for binding in FAST),
                        f"--runs_dir={tmp_path / 'runs'}", f"--output_dir={tmp_path / 'out'}",
                        "--executor=local", *flags])


@pytest.mark.parametrize("text, values", [
    ("0.1,0.05", ["0.1", "0.05"]),
    ("(0.5,0.75),(0.3, 0.6)", ["(0.5,0.75)", "(0.3, 0.6)"]),  # brackets keep their commas
    ("[1,(2,3)], {'a': 1,'b': 2}", ["[1,(2,3)]", "{'a': 1,'b': 2}"]),
    ("'a,b', \"c,'d\"", ["'a,b'", "\"c,'d\""]),  # so do quotes
    ("'wide_resnet'", ["'wide_resnet'"]),
])
def test_values_split_at_commas_outside_brackets_and_quotes(text, values):
    assert split_values("x", text) == values


@pytest.mark.parametrize("flag, message", [
    ("Trainer.lr", "give a binding and its values"),
    ("=0.1", "give a binding and its values"),
    ("Trainer.lr=0.1,", "an empty value"),
    ("Trainer.lr=(0.1,0.2", "'(' is never closed"),
    ("Trainer.lr=0.1),0.2", "')' closes no bracket"),
    ("Trainer.lr='0.1", "\"'\" is never closed"),
    ("Experiment.seed=0,1", "give the seeds with --seeds"),
])
def test_a_malformed_sweep_is_refused(flag, message):
    with pytest.raises(UserError) as error:
        swept_binding(flag)
    assert str(error.value).startswith(f"--sweep={flag}: ") and message in str(error.value)


def test_several_sweeps_are_their_cross_product_the_first_slowest():
    sweep = Sweep(("gin/dense.gin",), (), (swept_binding("Trainer.lr=0.1,0.05"),
                                           swept_binding("wide_resnet.width=2,4")), (0,))
    assert sweep.points() == [
        ("Trainer.lr = 0.1", "wide_resnet.width = 2"),
        ("Trainer.lr = 0.1", "wide_resnet.width = 4"),
        ("Trainer.lr = 0.05", "wide_resnet.width = 2"),
        ("Trainer.lr = 0.05", "wide_resnet.width = 4")]
    assert sweep.name == "dense-Trainer.lr-wide_resnet.width"


@pytest.mark.parametrize("given, seeds", [([3], [0, 1, 2]), ([1], [0]), ([0, 2], [0, 2]),
                                          ([5, 5], [5]), ([2, 0, 1], [0, 1, 2])])
def test_seeds_are_a_count_or_a_list(given, seeds):
    assert seed_list(given) == seeds


@pytest.mark.parametrize("given", [[0], [-1], [0, -2]])
def test_seeds_out_of_range_are_refused(given):
    with pytest.raises(UserError, match="^--seeds="):
        seed_list(given)


@pytest.mark.parametrize("sweep, error", [
    ("nothing_of_that_name.x=1,2", "error: --sweep=nothing_of_that_name.x=1,2: invalid gin "
                                   "configuration: No configurable matching "
                                   "'nothing_of_that_name'"),
    ("Trainer.no_such_setting=1,2", "error: --sweep=Trainer.no_such_setting=1,2: invalid gin "
                                    "configuration: Configurable 'Trainer' doesn't have a "
                                    "parameter named 'no_such_setting'"),
    ("Trainer.lr=0.1,'fast'", "error: --sweep=Trainer.lr=0.1,'fast': Trainer.lr must be a "
                              "number, got 'fast'"),
    ("wide_resnet.width=2,2.5", "error: --sweep=wide_resnet.width=2,2.5: wide_resnet.width "
                                "must be an integer, got 2.5"),
    ("Experiment.seed=0,1", "error: --sweep=Experiment.seed=0,1: the seed is not swept as a "
                            "binding; give the seeds with --seeds (e.g. --seeds=0,1,2)"),
    # a type that fits but a value its setting's check refuses, found planning the run
    ("wide_resnet.width=2,0", "error: --sweep: the runs of wide_resnet.width=0 cannot run: "
                              "wide_resnet.width must be >= 1, got 0"),
])
def test_a_wrong_sweep_is_one_line_and_creates_nothing(sweep, error, tmp_path, capsys):
    assert sweep_launch(tmp_path, f"--sweep={sweep}", "--seeds=2") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(error)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, error", [
    (["--table=1", "--sweep=Trainer.lr=0.1"], "error: --table is for tables"),
    (["--sweep=Trainer.lr=0.1", "--sweep=Trainer.lr=0.2"], "error: --sweep names Trainer.lr "
                                                           "twice"),
    (["--table=1", "--seeds=0,2"], "error: --seeds=0,2 names seeds, which only a --sweep takes"),
])
def test_flags_that_do_not_go_together_are_refused(flags, error, tmp_path, capsys):
    assert sweep_launch(tmp_path, *flags) == 2
    assert capsys.readouterr().err.startswith(error)
    assert list(tmp_path.iterdir()) == []


def test_the_plan_lists_each_run_and_trains_nothing(tmp_path, capsys):
    assert sweep_launch(tmp_path, "--sweep=MultiStep.milestones=(0.5,0.75),(0.3,0.6)",
                        "--seeds=0,2", "--plan") == 0
    out = capsys.readouterr().out
    for milestones in ("(0.5,0.75)", "(0.3,0.6)"):
        for seed in (0, 2):
            assert f"sweep/MultiStep.milestones={milestones}     {seed}" in out
    assert "Still to run: 4 runs" in out
    assert list(tmp_path.iterdir()) == []


def test_table_bindings_reach_the_plan(tmp_path):
    """--gin_bindings of the table mode: the plan's runs (and so the launcher's) are the rows
    with them."""
    gin_dir = tmp_path / "gin"
    (gin_dir / "table1").mkdir(parents=True)
    (gin_dir / "scale").mkdir()
    (gin_dir / "scale" / "smoke.gin").write_text((ROOT / "gin/scale/smoke.gin").read_text())
    (gin_dir / "table1" / "dense.gin").write_text("# row: Single Dense Model\n"
                                                  "include 'gin/dense.gin'\n")

    def dense_run(bindings):
        context = TableContext("smoke", RunStore(tmp_path / "runs"), gin_dir, bindings=bindings,
                               seeds=1)
        [run] = compute_plan.plan([1], context)
        return run

    plain, bound = dense_run(()), dense_run(("Trainer.lr = 0.05",))
    assert bindings(bound.config)["Trainer.lr"] == "0.05"
    assert plain.run_dir != bound.run_dir


def test_the_status_line_counts_each_run_and_keeps_log_lines_apart(capsys):
    runs = [PlannedRun("sweep", TableRow(f"Trainer.lr={lr}", "dense", ()), TableContext(), 0,
                       status=status) for lr, status in ((0.1, "finished"), (0.05, "missing"),
                                                         (0.01, "missing"))]
    plain = io.StringIO()
    status = LaunchStatus("sweep", runs, StatusLine(plain))
    status.set(runs[1], "running")
    status.ended(runs[1], "ran runs/x/seed0")
    status.ended(runs[2], "failed: diverged (log x.out)")
    assert plain.getvalue().splitlines() == [
        "sweep: 1/3 finished, 0 running, 2 queued, 0 failed",
        "sweep: 1/3 finished, 1 running, 1 queued, 0 failed",
        "sweep: 2/3 finished, 0 running, 1 queued, 0 failed",
        "sweep: 2/3 finished, 0 running, 0 queued, 1 failed"]
    assert capsys.readouterr().out.splitlines() == [
        "sweep/Trainer.lr=0.05 seed 0: ran runs/x/seed0",
        "sweep/Trainer.lr=0.01 seed 0: failed: diverged (log x.out)"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_status_line_is_rewritten_in_place():
    terminal = Terminal()
    line = StatusLine(terminal)
    line.update("sweep: 0/2 finished")
    line.update("sweep: 1/2 finished")
    line.close()
    written = terminal.getvalue()
    assert "\n" not in written.rstrip("\n")  # one line, its text replaced after each "\r"
    assert written.rstrip("\n").rsplit("\r", 1)[-1].strip() == "sweep: 1/2 finished"


def test_a_sweep_of_two_values_and_two_seeds_runs_compares_and_is_reused(tmp_path, capsys):
    flags = ["--sweep=Trainer.lr=0.1,0.05", "--seeds=2", "--max_parallel=2"]
    assert sweep_launch(tmp_path, *flags) == 0, capsys.readouterr()
    first = capsys.readouterr()
    store = RunStore(tmp_path / "runs")
    ran = {(bindings(readers.config_text(run))["Trainer.lr"],
            bindings(readers.config_text(run))["Experiment.seed"]) for run in store.finished()}
    assert ran == {("0.1", "0"), ("0.1", "1"), ("0.05", "0"), ("0.05", "1")}
    assert first.out.count(" ran ") == 4, first.out
    assert "sweep: 4/4 finished, 0 running, 0 queued, 0 failed" in first.err
    compared = pd.read_parquet(tmp_path / "out" / "compare.parquet")
    assert sorted(compared["Trainer.lr"]) == ["0.05", "0.1"] and list(compared.seeds) == [2, 2]
    assert (tmp_path / "out" / "compare.md").is_file()
    assert (tmp_path / "out" / "compare.html").is_file()  # with its plots: the test extra
    assert list((tmp_path / "out" / "plots").glob("sweep-*.png"))

    assert sweep_launch(tmp_path, *flags) == 0
    again = capsys.readouterr()
    assert "4 distinct runs, 4 finished" in again.out and "nothing to submit" in again.out
    assert "submitted" not in again.out and len(store.finished()) == 4
    assert "sweep: 4/4 finished, 0 running, 0 queued, 0 failed" in again.err
