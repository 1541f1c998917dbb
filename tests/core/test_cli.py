"""One command-line convention for every entry point (harness/core/cli.py): `--help` exits 0 and
names `--output_dir` where the command writes a folder; lists are comma-separated; a user's
mistake is one line and exit 2, Ctrl-C one line and 130, a bug its traceback; `--list` and
`--dry_run` show what exists and what a run would do without doing it."""
import importlib
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from harness.core import cli
from harness.core.errors import Interrupted, UserError

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# every `python -m` entry point, and whether it writes a folder
ENTRY_POINTS = {"harness.run": True, "harness.demo": True, "harness.tables": True,
                "harness.report": True, "harness.figures": True, "harness.paper": True,
                "harness.export": True, "harness.bench": True,
                "harness.bench.edst_wallclock": True, "harness.data.corrupt": True,
                "harness.data.tiny_imagenet": True, "harness.diff": False,
                "harness.flops": False, "harness.compare": True,
                "harness.migrate_runs": False, "harness.adopt": False,
                "harness.launch": True,
                "harness.gpu_check": True}
# a mistake as gin reports it: the line that says what is wrong, then the call's context
MISTAKE = UserError("what is wrong\n  In call to configurable Experiment")


def python(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)


def test_every_entry_point_is_listed():
    mains = {str(path.relative_to(ROOT).with_suffix("")).replace("/", ".")
             for path in (ROOT / "harness").rglob("*.py")
             if 'if __name__ == "__main__"' in path.read_text()}
    assert {name.removesuffix(".__main__") for name in mains} == set(ENTRY_POINTS)


def test_every_entry_point_imports_in_one_process_on_flags_of_its_own():
    """No entry point defines absl's global flags, which two of them would define twice."""
    for name in ENTRY_POINTS:
        importlib.import_module(name)
    assert "output_dir" not in flags.FLAGS


def command_line_raising(name: str, error: BaseException, monkeypatch) -> int:
    """`python -m <name>` run here, with `error` raised where its main starts (parsing its
    flags): the exit status that `sys.exit(main())` gives the shell."""
    def parse(self, argv):
        raise error

    monkeypatch.setattr(cli.Flags, "parse", parse)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module(name, run_name="__main__")
    return exit_.value.code


# runpy runs again, as __main__, entry points that the tests have imported before
RUN_AGAIN = pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")


@RUN_AGAIN
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_a_user_mistake_is_one_line_exit_2(name, monkeypatch, capsys):
    assert command_line_raising(name, MISTAKE, monkeypatch) == 2
    assert capsys.readouterr().err.splitlines() == ["error: what is wrong"]


@RUN_AGAIN
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_ctrl_c_is_one_line_exit_130(name, monkeypatch, capsys):
    assert command_line_raising(name, KeyboardInterrupt(), monkeypatch) == 130
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), lines


@RUN_AGAIN
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_a_bug_keeps_its_traceback(name, monkeypatch, capsys):
    with pytest.raises(ZeroDivisionError, match="a bug"):
        command_line_raising(name, ZeroDivisionError("a bug"), monkeypatch)
    assert capsys.readouterr().err == ""


FAKE_COMMAND = """
import sys
from harness.core import cli
from harness.core.errors import Interrupted, UserError

@cli.command(interrupted_outside_a_run="interrupted: nothing ran")
def main(argv=None):
    raise {error}

sys.exit(main())
"""


@pytest.mark.parametrize("error, status, stderr", [
    ("UserError('what is wrong\\nIn call to configurable X')", 2, ["error: what is wrong"]),
    ("KeyboardInterrupt()", 130, ["interrupted: nothing ran"]),
    ("Interrupted('interrupted: continue with: resume')", 130,
     ["interrupted: continue with: resume"]),
])
def test_the_contract_in_a_process(error, status, stderr):
    result = python("-c", FAKE_COMMAND.format(error=error))
    assert (result.returncode, result.stderr.splitlines()) == (status, stderr)


def test_a_bug_in_a_process_prints_its_traceback():
    result = python("-c", FAKE_COMMAND.format(error="ZeroDivisionError('a bug')"))
    assert result.returncode == 1
    assert "Traceback" in result.stderr and result.stderr.splitlines()[-1] == (
        "ZeroDivisionError: a bug")


def test_a_command_run_again_to_continue_says_so_whichever_run_was_cut_short(capsys):
    """harness.tables: the run's own line would name the command of a run, not the table's."""
    def main(argv):
        raise Interrupted("interrupted: continue this run with: harness/run.py --resume")

    assert cli.command(interrupted="interrupted: run the table again")(main)([]) == 130
    assert capsys.readouterr().err.splitlines() == ["interrupted: run the table again"]


def test_a_command_returns_what_it_decides():
    """Statuses a command returns on purpose (harness.diff's 1 on drift) pass through."""
    assert cli.command(lambda argv: 1)([]) == 1


def test_help_exits_0_everywhere_with_one_convention(tmp_path):
    # one interpreter for all of them: each main(["--help"]) in turn, as its own command would
    script = "\n".join([
        "import importlib, sys",
        "for name in sys.argv[1:]:",
        "    module = importlib.import_module(name)",
        "    if not hasattr(module, 'main'):  # a wing whose __main__ is the command",
        "        module = importlib.import_module(name + '.__main__')",
        "    status = module.main(['--help'])",
        "    print(f'EXIT {name} {status}')"])
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
