"""Each row runs under the protocol of its printed number (gin/protocol/), one switch runs a
whole table under one (gin/protocol/uniform.gin layered last), and the notes say which."""
from pathlib import Path

import gin
import pytest

from harness.tables.catalogue import PAPER
from harness.tables.context import TableContext
from harness.tables.notes import protocol_notes
from harness.tables.rows import table_rows
from harness.tables.sources import row_configuration

ROOT = Path(__file__).resolve().parents[2]
GIN = ROOT / "gin"
UNIFORM = str(GIN / "protocol" / "uniform.gin")
QUOTED = {"Single Dense Model", "Dense Ensemble", "Monte Carlo Dropout", "BatchEnsemble",
          "MIMO", "TreeNet", "Snapshot", "FGE"}


def protocol(row) -> tuple[float, str]:
    row_configuration(row)
    return (gin.query_parameter("Experiment.validation_fraction"),
            gin.query_parameter("checkpoint_selection.rule"))


@pytest.mark.parametrize("number", [1, 2, 3, 4, 6])
def test_each_row_runs_under_its_printed_numbers_protocol(number):
    scale = "tiny" if number == 3 else "smoke"  # Table 3 stands in at its tiny scale
    for row in table_rows(PAPER.table(number), TableContext(scale, gin_dir=GIN)):
        expected = (0.0, "last") if row.method in QUOTED else (0.1, "best_validation")
        assert protocol(row) == expected, row.name


@pytest.mark.parametrize("number", [1, 6])
def test_the_uniform_switch_runs_every_row_of_a_table_under_one_protocol(number):
    context = TableContext("smoke", gin_dir=GIN, extra_files=(UNIFORM,))
    rows = table_rows(PAPER.table(number), context)
    assert all(row.gin_files[-1] == UNIFORM for row in rows)
    assert {protocol(row) for row in rows} == {(0.1, "best_validation")}


def test_the_notes_name_each_rows_protocol_and_the_test_selected_rows():
    methods = ["Single Dense Model", "EDST Ensemble", "LTR Ensemble"]
    notes = "\n".join(protocol_notes(methods, 1, []))
    assert "- Single Dense Model: full training set, last checkpoint" in notes
    assert "- EDST Ensemble: the authors' protocol" in notes
    assert "selected on the TEST set by the authors" in notes
    uniform = "\n".join(protocol_notes(methods, 1, [UNIFORM]))
    assert "every row ran under gin/protocol/uniform.gin" in uniform
    assert "Protocol:" in PAPER.table(4).notes[0]


def test_table3_names_the_imagenet_rows_the_authors_selected_on_the_test_set():
    notes = "\n".join(protocol_notes(["Single Dense Model", "EDST Ensemble"], 3, []))
    assert "- EDST Ensemble: the authors' protocol" in notes
    assert "ImageNet numbers were selected on the TEST set by the authors" in notes
    assert "TEST" not in "\n".join(protocol_notes(["Single Dense Model", "MIMO"], 3, []))
