"""Damaged records (harness/store/readers.py): each kind read in one place, a damaged one one
line naming the file and what to do; a damaged run never blocks the others of its store."""
import json
import os

import pytest

from harness import migrate_runs, run as run_command
from harness.store import paths, readers
from harness.store.configuration import STORE_FORMAT
from harness.store.record import write_json
from harness.store.runs import RunStore
from tests.fakes import fake_run, stored_run
from tests.store.test_run_identity import format_1_id


def cut(path, keep: int) -> None:
    """`path` as a crash while it was written leaves it: its first `keep` bytes."""
    path.write_bytes(path.read_bytes()[:keep])


def damage_summary_shape(run):
    write_json(paths.summary(run), {"method": "dense", "metrics": [0.9]})


def damage_summary_list(run):
    paths.summary(run).write_text("[1, 2]")


def damage_summary_cut(run):
    cut(paths.summary(run), 40)


def damage_metrics_cut(run):
    cut(paths.metrics(run), 100)


def damage_metric_value(run):
    summary = json.loads(paths.summary(run).read_text())
    summary["metrics"]["test/accuracy"] = "high"
    write_json(paths.summary(run), summary)


def damage_flops(run):
    write_json(paths.flops(run), {"train_flops": 1.0})


def damage_config(run):
    paths.config(run).write_bytes("Experiment.method = 'dense'\n# é".encode()[:-1])


@pytest.mark.parametrize("damage, damaged_file, problem", [
    (damage_summary_shape, paths.SUMMARY, "no 'dataset'"),
    (damage_summary_list, paths.SUMMARY, "a JSON array, not an object"),
    (damage_summary_cut, paths.SUMMARY, "not JSON"),
    (damage_metric_value, paths.SUMMARY, "metric 'test/accuracy' is 'high'"),
    (damage_metrics_cut, paths.METRICS, "not a readable parquet file"),
    (damage_flops, paths.FLOPS, "no 'train_flops_ratio'"),
    (damage_config, paths.CONFIG, "not UTF-8 text at byte"),
])
def test_a_damaged_run_record_is_named_with_what_to_do(tmp_path, damage, damaged_file, problem):
    run = fake_run(tmp_path / "run")
    (run / "config.gin").write_text("Experiment.method = 'dense'\n")
    assert readers.run_damage(run) is None
    damage(run)
    said = readers.run_damage(run)
    assert said.startswith(f"{run / damaged_file} is damaged ({problem}")
    assert said.endswith(f"delete {run} and run it again") and "\n" not in said


@pytest.mark.parametrize("reader, record, text, problem", [
    (readers.failure, paths.failure_record, '{"log": null}', "no 'error'"),
    (readers.job, paths.job_record, '{"executor": "local", "job_id": null}', "'job_id' is None"),
    (readers.job, paths.job_record, "", "empty"),
])
def test_a_damaged_record_beside_a_run_is_named(tmp_path, reader, record, text, problem):
    run = tmp_path / "dense-0123456789ab" / "seed0"
    run.parent.mkdir()
    record(run).write_text(text)
    with pytest.raises(readers.DamagedRecord) as damaged:
        reader(run)
    assert str(damaged.value).startswith(f"{record(run)} is damaged ({problem})")


def test_migration_moves_the_readable_runs_and_names_the_damaged_one(tmp_path, capsys):
    runs = tmp_path / "runs"
    good = stored_run(runs, 1, "dense", members=1)
    other = stored_run(runs, 1, "dense", seed=1, members=1)
    torn = stored_run(runs, 1, "dst_m3_s08", members=3, sparsity=0.8)
    moved = {}
    for run in (good, other, torn):  # back into store format 1's places
        method = run.parent.name.split("-")[0]
        old = runs / f"{method}-{format_1_id(paths.config(run).read_text())}" / run.name
        old.parent.mkdir(exist_ok=True)
        os.replace(run, old)
        moved[run] = old
    for run in (good, torn):
        if not any(run.parent.iterdir()):
            run.parent.rmdir()
    (runs / "store.json").unlink()
    paths.summary(moved[torn]).unlink()  # unfinished: its config.gin is what it is filed by
    paths.config(moved[torn]).write_bytes("Experiment.method = 'dst'\n# é".encode()[:-1])

    code = migrate_runs.main([f"--runs_dir={runs}"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"left: {paths.config(moved[torn])} is damaged (not UTF-8 text at byte" in err
    assert "2 run(s) moved, 1 left" in out
    assert json.loads(paths.store_format(runs).read_text()) == {"format": STORE_FORMAT}
    assert sorted(RunStore(runs).finished()) == sorted([good, other])
    assert moved[torn].is_dir()  # left where it was, for its owner to delete
    assert not [folder for folder in runs.iterdir() if folder.is_dir()
                and not any(folder.iterdir())]


def test_resume_from_a_command_record_without_its_bindings_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.gin").write_text("Experiment.method = 'dense'\n")
    write_json(paths.command(run), {"gin_files_resolved": ["gin/dense.gin"]})
    code = run_command.main(["--resume", f"--output_dir={run}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {paths.command(run)} is damaged (no 'gin_bindings'): give "
                          f"the run's --gin_file and --gin_bindings to resume it")
    assert sorted(entry.name for entry in run.iterdir()) == ["command.json", "config.gin"]


def test_the_records_outside_a_run_are_checked_too(tmp_path):
    (tmp_path / "timings.json").write_text('{"table1": "fast"}')
    with pytest.raises(readers.DamagedRecord, match="'table1' is 'fast'"):
        readers.page_timings(tmp_path / "timings.json")
    assert readers.page_timings(tmp_path / "absent.json") == {}
    (tmp_path / "GENERATED.json").write_text("{")
    with pytest.raises(readers.DamagedRecord, match="generate it again"):
        readers.generation_marker(tmp_path, "GENERATED.json")
    write_json(tmp_path / "gpu_check.json", {"device": "H100", "plan_flops_per_s": {"resnet": 0}})
    with pytest.raises(readers.DamagedRecord, match="plan_flops_per_s 'resnet' is 0"):
        readers.gpu_check(tmp_path / "gpu_check.json")
    (tmp_path / "store.json").write_text('{"format": "2"}')
    with pytest.raises(readers.DamagedRecord, match="move it out of the store"):
        RunStore(tmp_path).format()
    (tmp_path / "bench.json").write_text("[1.5]")
    with pytest.raises(readers.DamagedRecord, match="a JSON array, not an object"):
        readers.bench(tmp_path / "bench.json")
    assert readers.bench(tmp_path / "absent.json") == {}
