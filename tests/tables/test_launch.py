"""`python -m harness.launch --executor=local`: submitit's LocalExecutor on CPU, smoke runs cut
to seconds. Two runs at once; a second launch while they run submits nothing; a job preempted
mid-run is requeued and ends with the metrics of an uninterrupted run; the compute plan names
what is running; a failed run is reported with its log and not submitted again. (Each test
starts several Python processes: about a minute on an idle 2-core machine.)"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.tables import compute_plan, run_rows
from harness.tables.catalogue import PAPER
from harness.store import paths
from harness.store import readers
from harness.store.locks import Busy, running
from harness.store.locks import training_lock
from harness.store.runs import RunStore
from harness.tables.context import TableContext
from harness.tables.sources import table_runs as runs_of_table

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Two epochs on 192 digits, clean test set only, no wall-clock rows.
FAST = """
Experiment.train_subset = 192
epoch_factor.factor = 0.008
Experiment.suites = ('test',)
Experiment.device = 'cpu'
inference_timing.enabled = False
"""
ROWS = {"dense": "# row: Single Dense Model\ninclude 'gin/dense.gin'\n" + FAST,
        "dst": "# row: DST Ensemble\ninclude 'gin/dst.gin'\nDSTEnsemble.num_members = 2\n"
               "SparsitySpec.update_interval = 4\n" + FAST}


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # row files include 'gin/dense.gin' relative to the repository


@pytest.fixture
def gin_dir(tmp_path):
    folder = tmp_path / "gin"
    (folder / "table1").mkdir(parents=True)
    (folder / "scale").mkdir()
    (folder / "scale" / "smoke.gin").write_text((ROOT / "gin/scale/smoke.gin").read_text())
    for name, text in ROWS.items():
        (folder / "table1" / f"{name}.gin").write_text(text)
    return folder


def launcher(tmp_path, gin_dir, *extra):
    return [sys.executable, "-m", "harness.launch", "--executor=local", "--table=1",
            "--scale=smoke", f"--gin_dir={gin_dir}", f"--runs_dir={tmp_path / 'runs'}",
            f"--output_dir={tmp_path / 'reports'}", *extra]


def smoke(runs_dir: Path, gin_dir: Path) -> TableContext:
    """Seed 0 of the test's rows at smoke scale, in the run store `runs_dir`."""
    return TableContext("smoke", RunStore(runs_dir), gin_dir, seeds=1)


def run_dir(tmp_path, gin_dir, row):
    """Where the store files the row's seed 0."""
    [run] = [run for run in compute_plan.plan([1], smoke(tmp_path / "runs", gin_dir))
             if run.row.name == row]
    return run.run_dir


def wait_for(condition, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def trainer_pid(path: Path) -> int:
    return readers.lock_holder(paths.lock(path))["pid"]


def test_two_runs_at_once_a_second_launch_and_a_preempted_job(tmp_path, gin_dir):
    """Two runs at once; a second launch while they run submits nothing; the DST job,
    preempted mid-run, is requeued and ends with the metrics of an uninterrupted run."""
    first = subprocess.Popen(launcher(tmp_path, gin_dir, "--max_parallel=2"), env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dirs = [run_dir(tmp_path, gin_dir, row) for row in ROWS]
    stopped = []
    try:
        # Both trainers hold their locks at once; frozen there, they stay running while the
        # second launch looks.
        wait_for(lambda: all(running(path) for path in dirs), "both runs to hold their locks")
        stopped = [trainer_pid(path) for path in dirs]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        jobs = [json.loads(paths.job_record(path).read_text())["job_id"] for path in dirs]
        second = subprocess.run(launcher(tmp_path, gin_dir), env=ENV, capture_output=True,
                                text=True, timeout=300)
        plan = compute_plan.plan([1], smoke(tmp_path / "runs", gin_dir))
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    dst = dirs[1]
    # Preempted once its first member is trained and the second has begun.
    wait_for(lambda: (dst / "checkpoints" / "member_0.pt").is_file() and running(dst),
             "DST's first member")
    first_pid = trainer_pid(dst)
    os.kill(first_pid, signal.SIGUSR2)  # submitit's preemption signal
    out, _ = first.communicate(timeout=600)

    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to submit" in second.stdout and "submitted" not in second.stdout
    assert second.stdout.count(": running: ") == 2
    assert [json.loads(paths.job_record(path).read_text())["job_id"] for path in dirs] == jobs
    assert sorted(run.status for run in plan) == ["running", "running"]

    assert first.returncode == 0, out
    assert out.count(" seed 0: ran") == 2, out
    assert trainer_pid(dst) != first_pid  # the requeued job's process finished it
    assert "preempted" in Path(json.loads(paths.job_record(dst).read_text())["log"]).read_text()
    table = pd.read_parquet(tmp_path / "reports" / "table1.parquet")
    assert (table.status == "ok").sum() == 2
    after = compute_plan.plan([1], smoke(tmp_path / "runs", gin_dir))
    assert [run.status for run in after] == ["finished", "finished"]

    baseline = tmp_path / "baseline"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the jobs ran (ENV): the same sums, the same numbers
    try:
        run_rows.run_table(1, smoke(baseline, gin_dir), rows=["dst"],
                           output_dir=tmp_path / "baseline_reports", progress=False)
    finally:
        torch.set_num_threads(threads)
    ours = pd.read_parquet(dst / "metrics.parquet")
    [baseline_run] = RunStore(baseline).finished()
    theirs = pd.read_parquet(baseline_run / "metrics.parquet")
    assert {"accuracy", "nll", "ece"} <= set(ours[(ours.suite == "test")
                                              & (ours.member == "ensemble")].metric)
    pd.testing.assert_frame_equal(ours[ours.suite == "test"].reset_index(drop=True),
                                  theirs[theirs.suite == "test"].reset_index(drop=True),
                                  rtol=1e-6)


def test_a_failed_run_is_reported_with_its_log_and_not_submitted_again(tmp_path, gin_dir):
    (gin_dir / "table1" / "dense.gin").unlink()
    (gin_dir / "table1" / "dst.gin").write_text(
        ROWS["dst"] + "Trainer.lr = 1e30\n")  # diverges in the first epoch
    done = subprocess.run(launcher(tmp_path, gin_dir), env=ENV, capture_output=True,
                          text=True, timeout=600)
    path = run_dir(tmp_path, gin_dir, "dst")
    failed = json.loads(paths.failure_record(path).read_text())
    assert "diverged" in failed["error"] and Path(failed["log"]).is_file()
    assert f"failed: {failed['error']} (log " in done.stdout
    # Not submitted again (the launcher submits only missing runs), nor trained by a table.
    [run] = compute_plan.plan([1], smoke(tmp_path / "runs", gin_dir))
    assert run.status == "failed" and failed["log"] in run.detail
    [row] = runs_of_table(PAPER.table(1), smoke(tmp_path / "runs", gin_dir),
                          require_finished=False)
    assert row.error == failed["error"]  # the table names it


def test_the_lock_is_exclusive_and_goes_with_its_process(tmp_path):
    path = tmp_path / "row" / "seed0"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from harness.store.locks import training_lock\n"
         f"with training_lock(Path({str(path)!r})):\n"
         "    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert running(path)["pid"] == holder.pid
        with pytest.raises(Busy, match=f"pid {holder.pid}"):
            with training_lock(path):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the lock file stays
        holder.wait()
    assert paths.lock(path).is_file() and running(path) is None
    with training_lock(path):
        assert running(path) is None or running(path)["pid"] == os.getpid()


def test_a_second_launch_sees_the_runs_the_first_holds_back_beyond_max_parallel(tmp_path,
                                                                                  gin_dir):
    first = subprocess.Popen(launcher(tmp_path, gin_dir, "--max_parallel=1"), env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dirs = [run_dir(tmp_path, gin_dir, row) for row in ROWS]
    stopped = None
    try:
        wait_for(lambda: any(running(path) for path in dirs), "one run to hold its lock")
        [active] = [path for path in dirs if running(path)]
        stopped = trainer_pid(active)
        os.kill(stopped, signal.SIGSTOP)  # the other stays waiting for the one slot
        [waiting] = [path for path in dirs if path != active]
        record = json.loads(paths.job_record(waiting).read_text())
        second = subprocess.run(launcher(tmp_path, gin_dir), env=ENV, capture_output=True,
                                text=True, timeout=300)
        plan = {run.run_dir: run for run in compute_plan.plan([1], smoke(tmp_path / "runs",
                                                                          gin_dir))}
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
    out, _ = first.communicate(timeout=600)

    assert record["launcher_pid"] == first.pid
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to submit" in second.stdout and "submitted" not in second.stdout
    assert ": running: " in second.stdout
    assert f": queued: waiting in the local launcher pid {first.pid}" in second.stdout
    assert plan[waiting].status == "queued" and plan[active].status == "running"
    assert first.returncode == 0, out
    assert out.count(" seed 0: ran") == 2, out
