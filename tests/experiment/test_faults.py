"""`python -m harness.run` under the faults of a cluster: a scheduler's SIGTERM (preemption)
and a full disk (a file-size limit, RLIMIT_FSIZE) while a checkpoint is written. Each ends in
one line and a defined exit status, leaves the last checkpoint intact, and `--resume` then
finishes with the numbers of an uninterrupted run."""
import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.experiment.execute import Preempted, preemptible

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# 40 epochs of 4 steps on 256 digits (a tenth of a second each), the clean test set alone, no
# wall-clock rows: long enough to be cut short after its first checkpoint.
ARGS = ["--gin_file=gin/dense.gin", "--gin_file=gin/scale/smoke.gin",
        "--gin_bindings=Experiment.train_subset = 256",
        "--gin_bindings=epoch_factor.factor = 0.16",
        "--gin_bindings=Experiment.suites = ('test',)",
        "--gin_bindings=inference_timing.enabled = False",
        "--gin_bindings=Experiment.deterministic = True",
        "--gin_bindings=Experiment.device = 'cpu'", "--noprogress"]
CHECKPOINT = "checkpoints/member_0.resume.pt"  # the only stage of a dense run


def harness_run(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.run", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def started(out: Path, **kwargs) -> subprocess.Popen:
    """A run of ARGS into `out`, returned once its first epoch's checkpoint is on disk."""
    process = harness_run(*ARGS, f"--output_dir={out}", **kwargs)
    deadline = time.monotonic() + 300
    while not (out / CHECKPOINT).is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no checkpoint appeared: {finish(process)}")
        time.sleep(0.02)
    return process


def resumed(out: Path, **kwargs) -> tuple[int, str]:
    return finish(harness_run("--resume", f"--output_dir={out}", "--noprogress", **kwargs))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    code, stderr = finish(harness_run(*ARGS, f"--output_dir={out}"))
    assert code == 0, stderr
    return out


def assert_same_run(ours: Path, theirs: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_parquet(ours / "metrics.parquet"),
                                  pd.read_parquet(theirs / "metrics.parquet"))
    assert digest(ours / "predictions" / "test.npz") == digest(theirs / "predictions" /
                                                               "test.npz")


def test_sigterm_stops_the_run_in_one_line_and_resume_ends_as_uninterrupted(uninterrupted,
                                                                            tmp_path):
    out = tmp_path / "run"
    process = started(out)
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)

    assert code == Preempted.exit_status == 143, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("preempted (SIGTERM): continue this run with: ")
    assert line.endswith(f" -m harness.run --resume --output_dir={out}")
    assert not (out / "summary.json").exists()  # cut short in training, not after it

    code, stderr = resumed(out)
    assert code == 0, stderr
    assert_same_run(out, uninterrupted)


def no_bigger_than(limit: int):
    """A child's file-size limit; SIGXFSZ ignored, so that a write past it fails with EFBIG
    as a full disk fails with ENOSPC, rather than killing the process."""
    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_files


def test_a_full_disk_at_a_checkpoint_is_one_line_keeps_the_last_and_resumes(uninterrupted,
                                                                            tmp_path):
    out = tmp_path / "run"
    process = started(out)
    process.kill()  # SIGKILL: the first epochs' checkpoint is all it leaves
    process.wait()
    checkpoint = out / CHECKPOINT
    before = digest(checkpoint)

    # Room for the records a resume writes, not for the next checkpoint.
    code, stderr = resumed(out, preexec_fn=no_bigger_than(checkpoint.stat().st_size // 2))
    assert code == 2, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot write {checkpoint}: File too large; free space")
    assert "), then continue this run with: " in line
    assert line.endswith(f" -m harness.run --resume --output_dir={out}")
    assert digest(checkpoint) == before
    assert not list(out.rglob("*.partial"))

    code, stderr = resumed(out)
    assert code == 0, stderr
    assert_same_run(out, uninterrupted)


def test_sigterm_raises_only_within_a_run_and_the_previous_handler_returns():
    """harness.run's own process alone: a launcher's job keeps submitit's handler."""
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted):
        with preemptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here, at once
    assert signal.getsignal(signal.SIGTERM) is previous
