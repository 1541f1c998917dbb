"""A run directory received from someone else cannot run code: every checkpoint is loaded as
tensors and plain values only, and a file that names anything else is refused in one line."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.core import safe_load
from harness.experiment.execute import run_experiment
from harness.core.safe_load import UnsafeFile

ROOT = Path(__file__).resolve().parents[2]
SMOKE = [str(ROOT / "gin" / "dense.gin"), str(ROOT / "gin" / "scale" / "smoke.gin")]
FAST = ["epoch_factor.factor = 0.008", "Experiment.suites = ('test',)",
        "Experiment.train_subset = 256"]


class Payload:
    """Unpickled, it writes `marker`: the stand-in for any code a planted pickle could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "ran")


def plant(path: Path, marker: Path) -> None:
    torch.save({"model": Payload(marker)}, path)


def unfinished_run(out: Path) -> Path:
    run_experiment(SMOKE, FAST, str(out), progress=False)
    (out / "summary.json").unlink()
    return out


def test_a_planted_stage_result_is_refused_not_run(tmp_path):
    out = unfinished_run(tmp_path / "run")
    marker = tmp_path / "marker"
    plant(out / "checkpoints" / "member_0.pt", marker)
    with pytest.raises(UnsafeFile, match=r"member_0\.pt names getattr, which loading would run "
                                         r"as code: refused"):
        run_experiment(SMOKE, FAST, str(out), resume=True, progress=False)
    assert not marker.exists()


def test_a_planted_resume_checkpoint_is_refused_not_skipped(tmp_path):
    out = unfinished_run(tmp_path / "run")
    marker = tmp_path / "marker"
    (out / "checkpoints" / "member_0.pt").unlink()  # the stage now resumes from its checkpoint
    plant(out / "checkpoints" / "member_0.resume.pt", marker)
    with pytest.raises(UnsafeFile, match="member_0.resume.pt names"):
        run_experiment(SMOKE, FAST, str(out), resume=True, progress=False)
    assert not marker.exists()


def test_damaged_bytes_are_not_mistaken_for_a_planted_file(tmp_path):
    path = tmp_path / "damaged.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception) as error:
        safe_load.load(path)
    assert not isinstance(error.value, UnsafeFile)


def test_the_command_line_refuses_it_in_one_line_exit_2(tmp_path):
    out = unfinished_run(tmp_path / "run")
    marker = tmp_path / "marker"
    plant(out / "checkpoints" / "member_0.pt", marker)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "harness.run", *[f"--gin_file={file}" for file in SMOKE],
         *[f"--gin_bindings={binding}" for binding in FAST], f"--output_dir={out}", "--resume",
         "--noprogress"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {out / 'checkpoints' / 'member_0.pt'} names getattr, which loading")
    assert not marker.exists()
