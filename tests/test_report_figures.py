"""`python -m harness.figures`: PNGs from run records; figures with nothing to draw are skipped."""
import numpy as np
import pytest

from harness import figures
from test_report import fake_row

PNG = b"\x89PNG\r\n\x1a\n"


def test_figures_from_run_records(tmp_path):
    runs = tmp_path / "runs"
    fake_row(runs, "dense", "Single Dense Model", members=1)
    fake_row(runs, "dense_ensemble", "Dense Ensemble", members=4)
    fake_row(runs, "dst", "DST Ensemble", members=3, sparsity=0.8)
    out = tmp_path / "figures"
    assert figures.main(["--table=1", "--scale=smoke", f"--runs_dir={runs}",
                         f"--output_dir={out}"]) == 0
    names = sorted(path.name for path in out.iterdir())
    assert names == [f"table1-smoke-{name}.png" for name in
                     ("disagreement", "ensemble_size", "kl", "layer_density")]
    assert all(path.read_bytes().startswith(PNG) for path in out.iterdir())


def test_pair_matrix_and_layer_densities_read_the_rows(tmp_path):
    row = fake_row(tmp_path, "dst", "DST Ensemble", members=3, sparsity=0.8)
    disagreement = figures.pair_matrix(row / "seed0", "disagreement")
    assert np.allclose(disagreement, [[0, 0.1, 0.2], [0.1, 0, 0.3], [0.2, 0.3, 0]])
    kl = figures.pair_matrix(row / "seed0", "kl")
    assert kl[0, 1] == 0.1 and np.isnan(kl[1, 0])  # KL is asymmetric: only i < j is measured
    densities = figures.layer_densities(row / "seed0")
    assert len(densities) == 3 and densities[2] == pytest.approx({"conv1": 0.5, "fc": 0.2})


def test_a_single_dense_model_alone_has_nothing_to_draw(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_row(runs, "dense", "Single Dense Model", members=1)
    assert figures.figures(1, "smoke", runs, tmp_path / "figures") == []
    output = capsys.readouterr().out
    assert all(f"no run to draw {name}" in output
               for name in ("ensemble_size", "disagreement", "kl", "layer_density"))


def test_no_runs_is_one_line_and_exit_2(tmp_path, capsys):
    assert figures.main(["--scale=smoke", f"--runs_dir={tmp_path}"]) == 2
    assert "no table runs at scale 'smoke'" in capsys.readouterr().err
