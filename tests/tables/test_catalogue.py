"""The catalogue (harness/tables/catalogue.py): the paper's tables and figures as data, and a table
of one's own added as one entry, its gin rows and its reference numbers, then built,
rendered and on the page with no other file touched."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.tables import long, wide
from harness.tables.catalogue import FIGURES, PAPER, TABLES, load
from harness.core.errors import UserError
from harness.store.runs import RunStore
from harness.tables.context import TableContext
from harness.tables.rows import table_rows
from harness.paper.build import make_paper
from tests.fakes import store_fake

ROOT = Path(__file__).resolve().parents[2]
GIN = ROOT / "gin"


def test_the_paper_is_thirteen_tables_and_its_figures_with_rows_resolving_at_every_scale():
    assert [table.number for table in TABLES] == list(range(1, 14))
    assert [figure.key for figure in FIGURES] == ["1", "2-left", "2-right", "3", "4", "5", "6",
                                                  "7"]
    wide_numbers = set(wide.load_reference().table)
    long_numbers = set(long.load_reference_extra().table)
    for table in TABLES:
        assert (table.kind == "long") == (table.measure is not None), table.number
        assert table.number in (long_numbers if table.kind == "long" else wide_numbers), table.number
        for scale in ("paper", "cpu", "smoke"):
            rows = table_rows(table, TableContext(scale, gin_dir=GIN).for_table(table))
            assert rows and len({row.name for row in rows}) == len(rows), (table.number, scale)
    table4 = {row.name: row for row in table_rows(PAPER.table(4), TableContext("cpu", gin_dir=GIN))}
    # A reused row is the other table's row with that table's layering: Table 2's CIFAR-100
    # scale file keeps it on CIFAR-100 at cpu scale.
    assert table4["dst_m3_s08_c100"].source == "table2/dst_m3_s08"
    assert table4["dst_m3_s08_c100"].gin_files[:3] == (
        str(GIN / "table2" / "dst_m3_s08.gin"), str(GIN / "scale" / "cpu.gin"),
        str(GIN / "table2" / "scale" / "cpu.gin"))


def test_no_table_folder_holds_a_row_file_that_only_points_at_another_tables_row():
    for path in GIN.glob("table*/*.gin"):
        lines = [line for line in path.read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
        assert not (len(lines) == 1 and lines[0].startswith("include 'gin/table")), path


MEASURE = '''
from harness.tables.catalogue import PAPER, Table
from harness.tables.diversity import diversity_and_accuracy

CATALOGUE = PAPER.with_tables(
    Table(14, "EDST with a longer exploration (ours)", "long", diversity_and_accuracy,
          notes=("Our own ablation.",), reference={reference!r}))
'''


@pytest.fixture
def table14(tmp_path):
    """A Table 14 of one's own: one catalogue entry, one gin row, its printed numbers."""
    gin = tmp_path / "gin"
    (gin / "table14").mkdir(parents=True)
    (gin / "scale").mkdir()
    (gin / "scale" / "smoke.gin").write_text((GIN / "scale" / "smoke.gin").read_text())
    (gin / "table14" / "edst_long.gin").write_text(
        "# row: EDST Ensemble\n# setting: t_ex = 200\ninclude 'gin/table1/edst_m3_s08.gin'\n")
    reference = tmp_path / "printed.csv"
    pd.DataFrame([{"table": 14, "dataset": "digits", "model": "wrn10_2",
                   "method": "EDST Ensemble", "M": 3, "sparsity": 0.8,
                   "setting": "t_ex = 200", "metric": "disagreement", "value": 0.5,
                   "note": ""}]).to_csv(reference, index=False)
    catalogue = tmp_path / "mine.py"
    catalogue.write_text(MEASURE.format(reference=str(reference)))
    contents = load(catalogue)
    [row] = table_rows(contents.table(14), TableContext("smoke", gin_dir=gin))
    run = store_fake(tmp_path / "runs", row, method="edst", members=3, sparsity=0.8)
    return tmp_path, catalogue, run


def test_a_table_of_ones_own_is_built_rendered_and_on_the_page(table14):
    tmp_path, catalogue, run = table14
    out = tmp_path / "paper"
    command = [sys.executable, "-m", "harness.tables", "--table=14", "--scale=smoke",
               f"--gin_dir={tmp_path / 'gin'}", f"--catalogue={catalogue}",
               f"--runs_dir={tmp_path / 'runs'}", f"--output_dir={out / 'smoke' / 'tables'}",
               "--noprogress"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"  reused {run}" in done.stdout  # its run exists: nothing trained
    frame = pd.read_parquet(out / "smoke" / "tables" / "table14.parquet")
    cell = frame[frame.metric == "disagreement"].iloc[0]
    assert (cell.status, cell.setting, cell.paper) == ("ok", "t_ex = 200", 0.5)
    assert "# Table 14: EDST with a longer exploration (ours)" in done.stdout
    context = TableContext("smoke", RunStore(tmp_path / "runs"), tmp_path / "gin", seeds=1)
    page = make_paper(context, output_dir=out, page_only=True, catalogue_file=catalogue)
    text = page.read_text()
    assert '<h2 id="table14">Table 14: EDST with a longer exploration (ours)</h2>' in text
    assert '<a href="#table14">Table 14</a>' in text
    assert f"<td>{cell.value:.3f}</td><td>0.500</td>" in text


def test_a_catalogue_file_without_a_catalogue_is_one_clear_error(tmp_path):
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(UserError, match="defines no CATALOGUE"):
        load(tmp_path / "empty.py")
    with pytest.raises(UserError, match="is not a file"):
        load(tmp_path / "absent.py")
    (tmp_path / "broken.py").write_text("import nowhere\n")
    with pytest.raises(UserError, match="fails to load: No module named 'nowhere'"):
        load(tmp_path / "broken.py")


def query(row, *names):
    """The values of gin parameters `names` as row `row` binds them at paper scale."""
    import gin
    from harness.experiment.config import parse
    parse([str(GIN / row)])
    try:
        return [gin.query_parameter(name) for name in names]
    finally:
        gin.clear_config()


@pytest.mark.parametrize("row", ["dst_m2_s08.gin", "edst_m2_s08.gin", "edst_m4_s08.gin"])
def test_table3_rows_of_the_official_imagenet_script_train_as_it_did(row):
    # label smoothing 0.1, 2 x 64 images per step, undecayed batch norm
    assert query(f"table3/{row}", "Trainer.label_smoothing", "Trainer.batch_size",
                 "Trainer.decay_norm_weights") == [0.1, 128, False]


def test_figure5_has_dst_rows_up_to_seven_members():
    from harness.tables.rows import figure_rows
    figure = next(figure for figure in FIGURES if figure.key == "5")
    rows = figure_rows(figure, TableContext("paper", gin_dir=GIN))
    dst = [row for row in rows if row.method == "DST Ensemble"]
    assert [query(f"figure5/{row.name}.gin", "DSTEnsemble.num_members") for row in dst] == [[7]]
