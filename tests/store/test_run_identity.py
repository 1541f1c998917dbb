"""A run's identity is its operative configuration (defaults included, issue 28 item 6) without
what only observes (item 7); a store of the earlier format is refused until migrated."""
import hashlib
import json
import os
from pathlib import Path

import gin
import pytest

import harness.experiment.assemble  # noqa: F401  every configurable: a run's id needs them all
from harness.core.errors import UserError
from harness.store import configuration
from harness.store.configuration import bindings, configuration_id
from harness.store.migrate import migrate
from harness.store.runs import RunStore
from harness.tables import compute_plan
from harness.tables.catalogue import PAPER, Catalogue
from harness.tables.context import TableContext
from tests.fakes import stored_run

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "Experiment.method = 'dst'\nExperiment.seed = 0\nDSTEnsemble.sparsity = 0.8\n"


def test_a_changed_default_changes_the_id(monkeypatch):
    before = configuration_id(CONFIG)
    trainer = gin.config._REGISTRY.get_match("epoch_factor").wrapped
    monkeypatch.setattr(trainer, "__defaults__", (2.0,))
    assert configuration_id(CONFIG) != before


def test_a_binding_equal_to_its_default_is_the_same_run():
    assert configuration_id(CONFIG + "Trainer.lr = 0.1\n") == configuration_id(CONFIG)
    assert configuration_id(CONFIG + "Trainer.lr = 0.2\n") != configuration_id(CONFIG)


@pytest.mark.parametrize("binding", ["trajectory_checkpoints.every_epochs = 10",
                                     "SparsitySpec.kernels = 'sparse'",
                                     "Experiment.tensorboard = True",
                                     "inference_timing.rounds = 1"])
def test_an_observing_binding_does_not_split_a_run(binding):
    assert configuration_id(f"{CONFIG}{binding}\n") == configuration_id(CONFIG)


def test_the_store_format_is_in_the_id(monkeypatch):
    before = configuration_id(CONFIG)
    monkeypatch.setattr(configuration, "STORE_FORMAT", configuration.STORE_FORMAT + 1)
    assert configuration_id(CONFIG) != before


def test_a_binding_of_no_configurable_is_one_clear_error():
    with pytest.raises(UserError, match="binds Nothing.here, but no configurable 'Nothing'"):
        configuration_id(CONFIG + "Nothing.here = 1\n")


def format_1_id(config: str) -> str:
    """The id store format 1 gave a configuration: its explicit bindings but the seed."""
    values = bindings(config)
    values.pop("Experiment.seed", None)
    text = "\n".join(f"{name} = {value}" for name, value in sorted(values.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def test_a_format_1_store_is_refused_then_migrated_to_the_new_ids(tmp_path):
    runs = tmp_path / "runs"
    run = stored_run(runs, 1, "dense", members=1)
    config = (run / "config.gin").read_text()
    old = runs / f"dense-{format_1_id(config)}" / "seed0"
    old.parent.mkdir()
    os.replace(run, old)
    run.parent.rmdir()
    (runs / "store.json").unlink()  # format 1 recorded none
    with pytest.raises(UserError) as refused:
        RunStore(runs).finished()
    assert "\n" not in str(refused.value)
    assert f"`python -m harness.migrate_runs --runs_dir={runs}`" in str(refused.value)
    done, left = migrate(runs)
    assert done == [f"{old} -> {run}"] and not left
    assert json.loads((runs / "store.json").read_text()) == {"format": 2}
    assert RunStore(runs).finished() == [run]


def test_a_migrated_run_goes_where_the_tables_look_for_it(tmp_path):
    # A real operative_config.gin leaves out the configurables a run never called: the smoke
    # scale's `TreeNet.split = 3` is in a dense run's config.gin, not in its operative one.
    runs = tmp_path / "runs"
    run = stored_run(runs, 1, "dense", members=1)
    config = (run / "config.gin").read_text()
    assert "TreeNet.split = 3" in config
    (run / "operative_config.gin").write_text(
        "".join(line for line in config.splitlines(keepends=True) if "TreeNet" not in line))
    old = runs / f"dense-{format_1_id(config)}" / "seed0"
    old.parent.mkdir()
    os.replace(run, old)
    run.parent.rmdir()
    (runs / "store.json").unlink()
    assert migrate(runs) == ([f"{old} -> {run}"], [])


def test_a_run_trained_under_another_default_migrates_to_an_id_of_its_own(tmp_path):
    runs = tmp_path / "runs"
    run = stored_run(runs, 1, "dense", members=1)
    config = (run / "config.gin").read_text()
    (run / "operative_config.gin").write_text(config + "Trainer.lr = 0.05\n")  # 0.1 today
    old = runs / f"dense-{format_1_id(config)}" / "seed0"
    old.parent.mkdir()
    os.replace(run, old)
    run.parent.rmdir()
    (runs / "store.json").unlink()
    [done], left = migrate(runs)
    assert not left and not done.endswith(f" -> {run}")


def test_figure_3_shares_the_runs_of_tables_1_and_2(monkeypatch):
    """Its trajectory cadence only observes: Figure 3's DST and EDST rows are the M = 3,
    S = 0.8 runs of Tables 1 and 2 at the same scale, no training of their own."""
    monkeypatch.chdir(ROOT)
    context = TableContext("smoke", gin_dir=ROOT / "gin", seeds=1)
    contents = Catalogue((PAPER.table(1), PAPER.table(2)),
                         tuple(figure for figure in PAPER.figures if figure.key == "3"))
    runs = compute_plan.distinct_runs(compute_plan.plan_sources(None, context, contents))
    reused = {name for run in runs for name in run.same_as}
    assert {"figure3/dst", "figure3/edst", "figure3/dst_c100", "figure3/edst_c100"} <= reused
    assert not any(run.source == "figure3" for run in runs)
