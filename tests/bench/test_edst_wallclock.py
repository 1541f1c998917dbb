"""`make bench-edst` (harness/bench/edst_wallclock.py) on fake run directories: EDST's training
seconds over the dense run's, merged into bench.json beside its other keys; no training."""
import json
from pathlib import Path

import pytest

from harness.bench import edst_wallclock

ROOT = Path(__file__).resolve().parents[2]
EDST_KERNELS = {"edst": {"setting": "auto", "available": True, "sparse_layers": 1,
                         "rebuilds": 12, "rebuild_seconds": 0.5,
                         "layers": {"conv1": {"kernels": "dense"},
                                    "blocks.0.conv1": {"kernels": "sparse"}}}}


def finished_run(run_dir: Path, method: str, train_seconds: float, train_flops: float,
                 **extra) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({
        "method": method, "dataset": "npz", "model": "wrn10_2", "num_members": 1,
        "sparsity": 0.0, "seed": 0, "epoch_factor": 0.1, "metrics": {"test/accuracy": 0.8},
        "git_commit": "abc", "config_hash": "0" * 16, "train_seconds": train_seconds,
        **extra}))
    (run_dir / "flops.json").write_text(json.dumps({
        "train_flops": train_flops, "train_flops_ratio": 1.0, "test_flops_ratio": 1.0,
        "training_runs": 1}))


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"trained: {args}")
    monkeypatch.setattr(edst_wallclock.subprocess, "run", refuse)


def both_runs(runs: Path) -> None:
    finished_run(runs / "edst", "edst", 1800.0, 6.0e15, sparse_kernels=EDST_KERNELS)
    finished_run(runs / "dense", "dense", 1000.0, 1.0e16)


def test_the_ratio_of_two_finished_runs_is_merged_into_bench_json(tmp_path, no_training,
                                                                  capsys):
    both_runs(tmp_path / "runs")
    bench = tmp_path / "bench" / "bench.json"
    bench.parent.mkdir()
    others = {"torch": "2.x", "results": [{"name": "train_step"}],
              "sparse_inference_speedup": {"S0.9_b1": [{"value": 3.6}]},
              "edst_cpu_wallclock_ratio": 9.0}
    bench.write_text(json.dumps(others))
    status = edst_wallclock.main([f"--output_dir={bench.parent}",
                                  f"--runs_dir={tmp_path / 'runs'}"])
    assert status == 0
    written = json.loads(bench.read_text())
    assert written["edst_cpu_wallclock_ratio"] == pytest.approx(1.8)
    assert {key: written[key] for key in others if key != "edst_cpu_wallclock_ratio"} == \
        {key: value for key, value in others.items() if key != "edst_cpu_wallclock_ratio"}
    detail = written["edst_cpu_wallclock"]
    assert (detail["edst_train_seconds"], detail["dense_train_seconds"]) == (1800.0, 1000.0)
    assert detail["train_flops_ratio"] == pytest.approx(0.6)
    assert detail["sparse_kernels"] == {"sparse_layers": 1, "layers": 2, "rebuilds": 12,
                                        "rebuild_seconds": 0.5}
    assert detail["edst_run"] == str(tmp_path / "runs" / "edst")
    out = capsys.readouterr().out
    assert "reusing the finished run" in out and "edst_cpu_wallclock_ratio = 1.800" in out


def test_without_a_bench_json_it_writes_one(tmp_path, no_training):
    both_runs(tmp_path / "runs")
    assert edst_wallclock.main([f"--output_dir={tmp_path / 'out'}",
                                f"--runs_dir={tmp_path / 'runs'}"]) == 0
    assert set(json.loads((tmp_path / "out" / "bench.json").read_text())) == \
        set(edst_wallclock.KEYS)


def test_unfinished_runs_train_one_after_the_other_through_harness_run(tmp_path, monkeypatch):
    """EDST first, then dense, each continued where an earlier try stopped (--resume), EDST
    on 'auto' kernels, both at the cpu scale."""
    monkeypatch.chdir(ROOT)
    data = tmp_path / "cifar10.npz"
    data.write_bytes(b"")
    monkeypatch.setattr(edst_wallclock, "DATA", data)
    runs = tmp_path / "runs"
    commands = []

    def harness_run(command):
        commands.append(command)
        name = Path(next(arg for arg in command if arg.startswith("--output_dir="))
                    .partition("=")[2]).name
        finished_run(runs / name, name, {"edst": 1200.0, "dense": 1000.0}[name], 1e15)
        return edst_wallclock.subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(edst_wallclock.subprocess, "run", harness_run)
    assert edst_wallclock.main([f"--output_dir={tmp_path}", f"--runs_dir={runs}"]) == 0
    assert [command[1:3] for command in commands] == [["-m", "harness.run"]] * 2
    edst, dense = commands
    assert edst[3:] == ["--gin_file=gin/edst.gin", "--gin_file=gin/scale/cpu.gin",
                        "--gin_bindings=SparsitySpec.kernels = 'auto'",
                        f"--output_dir={runs / 'edst'}", "--resume", "--noprogress"]
    assert dense[3:] == ["--gin_file=gin/dense.gin", "--gin_file=gin/scale/cpu.gin",
                         f"--output_dir={runs / 'dense'}", "--resume", "--noprogress"]
    assert json.loads((tmp_path / "bench.json").read_text())[
        "edst_cpu_wallclock_ratio"] == pytest.approx(1.2)


def test_a_run_that_fails_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    data = tmp_path / "cifar10.npz"
    data.write_bytes(b"")
    monkeypatch.setattr(edst_wallclock, "DATA", data)
    monkeypatch.setattr(edst_wallclock.subprocess, "run",
                        lambda command: edst_wallclock.subprocess.CompletedProcess(command, 2))
    assert edst_wallclock.main([f"--output_dir={tmp_path}",
                                f"--runs_dir={tmp_path / 'runs'}"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: the edst run stopped with exit status 2 (its error above); run this command "
        "again to continue it"]


@pytest.mark.parametrize("case", ["no data", "damaged bench.json", "wrong method",
                                  "no training seconds", "runs_dir a file"])
def test_bad_input_is_one_line_before_any_training(case, tmp_path, monkeypatch, no_training,
                                                   capsys):
    monkeypatch.chdir(ROOT)
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(edst_wallclock, "DATA", tmp_path / "missing.npz")
    expected = {"no data": f"error: {tmp_path / 'missing.npz'} is missing: `make cifar10-npz` "
                           f"makes it (README, Data)",
                "damaged bench.json": f"error: {out / 'bench.json'} is damaged (not JSON",
                "wrong method": f"error: {runs / 'edst'} holds a run of method 'dense', not "
                                f"'edst': delete it, or choose another --runs_dir",
                "no training seconds": f"error: {runs / 'dense' / 'summary.json'} is damaged "
                                       f"('train_seconds' is None): delete {runs / 'dense'} "
                                       f"and run it again",
                "runs_dir a file": f"error: --runs_dir {tmp_path / 'file'} is a file, not a "
                                   f"folder; choose another --runs_dir"}[case]
    if case == "damaged bench.json":
        (out / "bench.json").write_text("{ not json")
    if case == "wrong method":
        finished_run(runs / "edst", "dense", 10.0, 1e15)
        finished_run(runs / "dense", "dense", 10.0, 1e15)
    if case == "no training seconds":
        finished_run(runs / "edst", "edst", 10.0, 1e15)
        finished_run(runs / "dense", "dense", None, 1e15)
    if case == "runs_dir a file":
        runs = tmp_path / "file"
        runs.write_text("")
    assert edst_wallclock.main([f"--output_dir={out}", f"--runs_dir={runs}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(expected), err


def test_make_bench_keeps_these_keys_of_bench_json(tmp_path):
    bench = tmp_path / "bench.json"
    assert edst_wallclock.recorded(bench) == {}
    bench.write_text(json.dumps({"edst_cpu_wallclock_ratio": 0.9, "edst_cpu_wallclock": {},
                                 "results": []}))
    assert edst_wallclock.recorded(bench) == {"edst_cpu_wallclock_ratio": 0.9,
                                              "edst_cpu_wallclock": {}}
    bench.write_text("{ not json")
    assert edst_wallclock.recorded(bench) == {}  # make bench replaces a damaged file


def test_help_names_the_figure_and_exits_0(capsys):
    assert edst_wallclock.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m harness.bench.edst_wallclock")
    assert "edst_cpu_wallclock_ratio" in out and "--runs_dir" in out
