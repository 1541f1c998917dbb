"""One trainer per run directory: a second `harness.run` on a directory another process is
training is refused in one line naming the holder, exit status 2, and the first finishes its
run untouched; the run records the code it was trained with."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.core.provenance import head_commit

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The first trainer is stopped (SIGSTOP) at its first checkpoint while the second starts, so
# that however fast either is, the second meets a run in training.
ARGS = ["--gin_file=gin/dense.gin", "--gin_file=gin/scale/smoke.gin",
        "--gin_bindings=Experiment.suites = ('test',)",
        "--gin_bindings=Experiment.train_subset = 256",
        "--gin_bindings=epoch_factor.factor = 0.1", "--noprogress"]


def test_a_second_trainer_is_refused_naming_the_first_which_finishes(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "harness.run", *ARGS, f"--output_dir={out}"],
                             cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("checkpoints/*.resume.pt")) and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)
        try:
            second = subprocess.run([sys.executable, "-m", "harness.run", "--resume",
                                     f"--output_dir={out}", "--noprogress"], cwd=ROOT, env=ENV,
                                    capture_output=True, text=True, timeout=300)
        finally:
            first.send_signal(signal.SIGCONT)
        _, stderr = first.communicate(timeout=600)
    finally:
        first.kill()
    assert second.returncode == 2, second.stderr
    [line] = second.stderr.strip().splitlines()
    assert line.startswith(f"error: {out} is being trained by pid {first.pid} on ")
    assert " since 20" in line  # the start time the lock records

    assert first.returncode == 0, stderr
    command = json.loads((out / "command.json").read_text())
    assert command["resumed"] == []  # the second never touched the run
    epochs = [line.split(",")[1] for line in (out / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [str(epoch) for epoch in range(1, len(epochs) + 1)]  # each epoch once
    summary = json.loads((out / "summary.json").read_text())
    code = {key: summary[key] for key in ("git_commit", "git_dirty", "git_diff_hash")}
    assert code["git_commit"] == head_commit() == command["code"]["git_commit"]
    assert set(command["code"]) == set(code)  # recorded when training started, too
    assert isinstance(code["git_dirty"], bool)
    assert (code["git_diff_hash"] is None) == (not code["git_dirty"])
