"""Gin files named by path work from any working directory (harness/experiment/config.py):
their includes (`include 'gin/sparse.gin'`, written from the checkout's root) are found beside
the `gin/` folder the file sits in, as an installed wheel run from elsewhere needs."""
from pathlib import Path

import gin

import harness.experiment.execute  # noqa: F401  registers Experiment and every configurable
from harness.experiment.config import parse

ROOT = Path(__file__).resolve().parents[2]


def test_includes_are_found_beside_the_gin_folder_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parse([str(ROOT / "gin" / "edst.gin")])
    assert gin.query_parameter("Experiment.method") == "edst"
    assert gin.query_parameter("SparsitySpec.growth") == "gradient"  # two includes down
