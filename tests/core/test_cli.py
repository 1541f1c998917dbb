"""One command-line convention for every entry point (harness/core/cli.py): `--help` exits 0 and
names `--output_dir` where the command writes a folder; lists are comma-separated; `--list`
and `--dry_run` show what exists and what a run would do without doing it."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# every `python -m` entry point, and whether it writes a folder
ENTRY_POINTS = {"harness.run": True, "harness.demo": True, "harness.tables": True,
                "harness.report": True, "harness.figures": True, "harness.paper": True,
                "harness.export": True, "harness.bench": True, "harness.data.corrupt": True,
                "harness.data.tiny_imagenet": True, "harness.diff": False,
                "harness.flops": False, "harness.compare": True,
                "harness.migrate_runs": False}
# the two that run under absl's app (their flags are absl's global ones): --help in a process
APP_ENTRY_POINTS = ("harness.launch", "harness.gpu_check")


def python(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)


def test_every_entry_point_is_listed():
    mains = {str(path.relative_to(ROOT).with_suffix("")).replace("/", ".")
             for path in (ROOT / "harness").rglob("*.py")
             if 'if __name__ == "__main__"' in path.read_text()}
    assert {name.removesuffix(".__main__") for name in mains} == {*ENTRY_POINTS,
                                                                   *APP_ENTRY_POINTS}


def test_help_of_the_app_entry_points_exits_0_and_names_output_dir(tmp_path):
    for name in APP_ENTRY_POINTS:
        result = python("-m", name, "--help", cwd=tmp_path)
        assert result.returncode == 0, (name, result.stderr)
        assert "--output_dir" in result.stdout, name
    assert list(tmp_path.iterdir()) == []


def test_help_exits_0_everywhere_with_one_convention(tmp_path):
    # one interpreter for all of them: each main(["--help"]) in turn, as its own command would
    script = "\n".join([
        "import importlib, sys",
        "for name in sys.argv[1:]:",
        "    module = importlib.import_module(name)",
        "    if not hasattr(module, 'main'):  # a wing whose __main__ is the command",
        "        module = importlib.import_module(name + '.__main__')",
        "    try:",
        "        module.main(['--help'])",
        "    except SystemExit as exit_:",
        "        print(f'EXIT {name} {exit_.code}')",
        "    else:",
        "        print(f'EXIT {name} none')"])
    result = python("-c", script, *ENTRY_POINTS, cwd=tmp_path)  # writes nothing, anywhere
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("EXIT")] == [
        f"EXIT {name} 0" for name in ENTRY_POINTS]
    helps = result.stdout.split("\nEXIT ")  # help i, then "<name> 0" and help i + 1
    for text, (name, writes) in zip(helps, ENTRY_POINTS.items()):
        assert f"usage: python -m {name} " in text
        assert ("--output_dir:" in text) == writes, name
        assert "--out:" not in text and "--noprogress:" not in text, name
    assert list(tmp_path.iterdir()) == []


def test_a_flag_mistake_is_one_line_exit_2():
    result = python("-m", "harness.export", "somewhere", "--out=x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Unknown command line flag 'out'. Did you mean: output_dir ?"]


def test_tiny_imagenet_refuses_a_folder_it_did_not_write(tmp_path):
    from harness.data import tiny_imagenet

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert tiny_imagenet.main([f"--output_dir={mine}"]) == 2
    assert [path.name for path in mine.iterdir()] == ["thesis.tex"]
    made = tmp_path / "tiny"
    assert tiny_imagenet.main([f"--output_dir={made}"]) == 0
    assert tiny_imagenet.main([f"--output_dir={made}"]) == 0  # its own: left alone
    assert sorted(path.name for path in made.iterdir() if not path.name.startswith(".")) == [
        "train", "val"]


def test_list_names_methods_with_their_gin_file_and_tables_with_reused_rows():
    result = python("-m", "harness.run", "--list")
    assert result.returncode == 0, result.stderr
    assert "  edst            gin/edst.gin" in result.stdout
    assert "dense_ensemble_c10 (= table1/dense_ensemble)" in result.stdout


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = python("-m", "harness.run", "--gin_file=gin/dense.gin",
                    "--gin_file=gin/scale/smoke.gin", "--gin_bindings=Experiment.suites = "
                    "('test',)", f"--output_dir={out}", "--dry_run")
    assert result.returncode == 0, result.stderr
    assert "Experiment.method = 'dense'" in result.stdout
    assert f"output directory: {out} (would be created)" in result.stdout
    assert "planned FLOPs: training" in result.stdout
    assert "estimated training time:" in result.stdout
    assert not out.exists()
