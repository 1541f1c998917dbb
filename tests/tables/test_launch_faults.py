"""A launcher (`python -m harness.launch --executor=local`) killed around a submission: after
submitting a job but before recording its id, or after writing its "submitting" record but
before submitting. A second launch neither loses the run nor submits it twice. (Each test
starts a few Python processes and trains one smoke run: about half a minute.)"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.store import paths
from harness.store.locks import SUBMISSION, SUBMITTING, job_alive, submitting_record
from harness.store.record import is_finished
from tests.tables.test_launch import (ENV, ROWS, at_root, gin_dir, launcher,  # noqa: F401
                                      run_dir, wait_for)

# The launcher killed (os._exit: no cleanup runs, as under SIGKILL) at the step named.
KILLED_AT = """
import os, sys
from harness.tables import launch
def killed(*args, **kwargs):
    os._exit(137)
setattr(launch, sys.argv[1], killed)
sys.exit(launch.main(sys.argv[2:]))
"""


def killed_launch(tmp_path, gin_dir, step):
    """A launch killed when it reaches `step`, a function of harness/tables/launch.py."""
    command = launcher(tmp_path, gin_dir)
    output = tmp_path / f"killed_at_{step}.log"
    with output.open("w") as log:  # not a pipe: its job inherits it and would hold it open
        done = subprocess.run([sys.executable, "-c", KILLED_AT, step, *command[3:]], env=ENV,
                              stdout=log, stderr=subprocess.STDOUT, timeout=300)
    assert done.returncode == 137, output.read_text()


def launch(tmp_path, gin_dir):
    done = subprocess.run(launcher(tmp_path, gin_dir), env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def submitted(output: str) -> list[str]:
    """The runs a launch says it submitted."""
    return [line.split(":")[0] for line in output.splitlines() if line.startswith("submitted ")]


def submissions(tmp_path):
    return list((tmp_path / "runs" / "launch").glob("*_submitted.pkl"))


def carriers(token: str) -> list[int]:
    """The processes of a local job submitted with `token`: its controller and task."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"{SUBMISSION}={token}".encode() in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def one_row(gin_dir):
    (gin_dir / "table1" / "dst.gin").unlink()
    assert list(ROWS)[0] == "dense"


def test_killed_after_submitting_the_job_runs_once_and_is_not_submitted_again(tmp_path,
                                                                              gin_dir):
    one_row(gin_dir)
    killed_launch(tmp_path, gin_dir, "record_job")
    dense = run_dir(tmp_path, gin_dir, "dense")
    record = json.loads(paths.job_record(dense).read_text())
    assert record["job_id"] == SUBMITTING
    # Its job, frozen while it starts (or, if it is that far, trains), is queued (or
    # running) to the second launch: either way not submitted again.
    stopped = carriers(record["submission"])
    assert stopped
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        second = launch(tmp_path, gin_dir)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    assert "nothing to submit" in second and not submitted(second), second
    assert ": queued: local job submitted by the launcher pid " in second or \
        ": running: " in second, second

    wait_for(lambda: is_finished(dense), "the orphaned job to finish its run")
    assert "1 distinct runs, 1 finished" in launch(tmp_path, gin_dir)
    [job] = submissions(tmp_path)
    log = job.with_name(job.name.replace("_submitted.pkl", "_0_log.out"))
    assert f"{dense}: ran " in log.read_text()


def test_killed_before_submitting_the_run_is_submitted_by_the_next_launch(tmp_path, gin_dir):
    one_row(gin_dir)
    killed_launch(tmp_path, gin_dir, "RunJob")  # its job is made just before it is submitted
    dense = run_dir(tmp_path, gin_dir, "dense")
    assert json.loads(paths.job_record(dense).read_text())["job_id"] == SUBMITTING
    assert not submissions(tmp_path)

    second = launch(tmp_path, gin_dir)
    assert submitted(second) == ["submitted table1/dense seed 0"], second
    assert "table1/dense seed 0: ran " in second
    assert is_finished(dense) and len(submissions(tmp_path)) == 1


def exec_set_up(pid: int) -> None:
    """Waits until the kernel has laid out `pid`'s new environment: Popen returns once exec
    has begun, and /proc/PID/environ reads empty for a moment after (a job's controller,
    which the launcher checks much later, is long past that)."""
    environ = Path(f"/proc/{pid}/environ")
    deadline = time.monotonic() + 10
    while not environ.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_submission_whose_launcher_died_is_alive_while_a_process_carries_its_token():
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    record = {**submitting_record("local", Path("logs"), "token-1"), "launcher_pid": ended.pid}
    assert not job_alive(record)  # never submitted, or its job has ended: submit again
    job = subprocess.Popen(["sleep", "30"], env={**os.environ, SUBMISSION: "token-1"})
    try:
        exec_set_up(job.pid)
        assert job_alive(record)
    finally:
        job.kill()
        job.wait()
    assert job_alive({**record, "host": "another-host"})  # cannot tell: never twice
