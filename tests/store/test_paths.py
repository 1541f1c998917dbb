"""harness/store/paths.py names every file in and beside a run: the names stay those existing
run stores hold, and no other module of harness/ or methods/ spells one (tests may)."""
import ast
from pathlib import Path

from harness.store import paths

ROOT = Path(__file__).resolve().parents[2]
PATHS_MODULE = ROOT / "harness" / "store" / "paths.py"
# Literals that name a run's file; any string constant containing one is a path built by hand.
RUN_FILE_NAMES = ("summary.json", "command.json", "config.gin", "operative_config.gin",
                  "metrics.parquet", "flops.json", "history.csv", "test.npz", ".lock",
                  ".job.json", ".failed.json", ".error.json", ".resume.pt")


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants of `tree`: prose may name a file."""
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def spelled_names(module: Path) -> list[tuple[int, str]]:
    """(line, name) of each run file name in a string constant of `module`, prose aside."""
    tree = ast.parse(module.read_text())
    prose = docstrings(tree)
    return [(node.lineno, name) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in prose for name in RUN_FILE_NAMES if name in node.value]


def test_no_module_but_paths_spells_a_run_file_name():
    sources = [path for folder in ("harness", "methods") for path in (ROOT / folder).rglob("*.py")
               if path != PATHS_MODULE]
    assert sources
    assert [f"{path.relative_to(ROOT)}:{line}: {name}" for path in sorted(sources)
            for line, name in spelled_names(path)] == []


def test_the_scan_sees_a_name_in_code_and_not_in_prose(tmp_path):
    module = tmp_path / "module.py"
    module.write_text('"""Writes summary.json."""\n\n\ndef lock(run):\n'
                      '    """Beside config.gin."""\n    return run / f"{run.name}.lock"\n')
    assert spelled_names(module) == [(6, ".lock")]


def test_the_names_are_those_of_existing_run_stores():
    run = Path("runs/dst-0123456789abcdef/seed2")
    checkpoints = paths.checkpoints(run)
    inside = [paths.config(run), paths.command(run), paths.gin_file_copy(run, 1, "gin/a/b.gin"),
              paths.operative_config(run), paths.metrics(run), paths.summary(run),
              paths.history(run), paths.tensorboard(run), paths.flops(run),
              paths.test_predictions(run), checkpoints,
              paths.stage_checkpoint(checkpoints, "member_0"),
              paths.resume_checkpoint(checkpoints, "member_0"),
              paths.previous_checkpoint(paths.resume_checkpoint(checkpoints, "member_0")),
              paths.member_checkpoint(checkpoints, 3),
              paths.trajectory_checkpoint(checkpoints, "edst", 150),
              paths.rescored(run, "ood", "0a1b2c3d4e5f"),
              paths.rescore_failure(run, "ood", "0a1b2c3d4e5f")]
    names = [path.relative_to(run).as_posix() for path in inside]
    assert {name.split("/")[0] for name in names} == paths.RUN_ENTRIES
    assert names == [
        "config.gin", "command.json", "gin_files/1-b.gin", "operative_config.gin",
        "metrics.parquet", "summary.json", "history.csv", "tensorboard", "flops.json",
        "predictions/test.npz", "checkpoints", "checkpoints/member_0.pt",
        "checkpoints/member_0.resume.pt", "checkpoints/member_0.resume.pt.previous",
        "checkpoints/member_3.pt", "checkpoints/trajectory/edst/epoch_150.pt",
        "rescored/ood-0a1b2c3d4e5f.parquet", "rescored/ood-0a1b2c3d4e5f.failed.json"]
    beside = [paths.lock(run), paths.job_record(run), paths.failure_record(run),
              paths.error_record(run), paths.staging(run), paths.retired(run)]
    assert [path.relative_to(run.parent).as_posix() for path in beside] == [
        "seed2.lock", "seed2.job.json", "seed2.failed.json", "seed2.error.json", ".seed2.new",
        ".seed2.old"]


def test_trajectory_checkpoints_come_in_epoch_order(tmp_path):
    for epoch in (10, 2, 1):
        path = paths.trajectory_checkpoint(tmp_path, "dst", epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    stage = paths.trajectory_dir(tmp_path) / "dst"
    assert [paths.trajectory_epoch(path) for path in paths.trajectory_checkpoints(stage)] == [
        1, 2, 10]
