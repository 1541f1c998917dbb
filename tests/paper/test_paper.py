"""The report page (`make paper`, harness/paper/build.py): every table and figure of the paper is on
it, with ours, the paper's number and the difference, and whatever is missing is named with
why."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.paper import build as paper, figures, page

from harness.tables import render, wide
from harness.tables.catalogue import FIGURES, PAPER, TABLES
from harness.tables.context import TableContext
from harness.tables.rows import figure_rows
from harness.tables.long import LONG_COLUMNS
from harness.paper.build import make_paper
from harness.tables.report import report
from harness.store.runs import RunStore
from harness.tables.sources import FigureUnavailable, Sources
from tests.fakes import store_fake, stored_run

ROOT = Path(__file__).resolve().parents[2]


def long_table(number, rows):
    """A table in harness/tables/long.py's format: one row per printed number."""
    frame = pd.DataFrame([{"table": number, "dataset": "cifar10", "method": method, "M": 3,
                           "sparsity": 0.8, "setting": None, "metric": metric, "value": ours,
                           "paper": theirs, "difference": ours - theirs, "status": status,
                           "reason": reason or None}
                          for method, metric, ours, theirs, status, reason in rows])
    return frame.reindex(columns=list(LONG_COLUMNS))


def figure(key: str):
    return next(item for item in FIGURES if item.key == key)


def at_scale(scale: str) -> TableContext:
    return TableContext(scale, gin_dir=ROOT / "gin")


def figure5_rows(runs) -> Path:
    """Figure 5's EDST rows: M = 2 runs on its own; M = 3 is Table 1's run (its
    configuration)."""
    [m2] = [row for row in figure_rows(figure("5"), at_scale("smoke"))
            if row.name == "edst_m2_s08"]
    return store_fake(runs, m2, method="edst", members=2, sparsity=0.8)


def table1_runs(runs) -> dict[str, Path]:
    return {"dense": stored_run(runs, 1, "dense", members=1),
            "dst_m3_s08": stored_run(runs, 1, "dst_m3_s08", members=3, sparsity=0.8, acc=0.97,
                                     nll=0.2, method="dst"),
            "edst_m3_s08": stored_run(runs, 1, "edst_m3_s08", members=3, sparsity=0.8,
                                      method="edst")}


def paper_page(tmp_path) -> tuple[Path, dict[str, Path]]:
    """The page at smoke scale without training: Table 1 from finished fake runs (returned by
    row), Tables 4 and 8 in the long format, the rest not made; Figures 4-7 drawn."""
    runs = tmp_path / "runs"
    table1 = table1_runs(runs)
    figure5_rows(runs)
    tables = tmp_path / "paper" / "smoke" / "tables"
    report(PAPER.table(1), TableContext("smoke", RunStore(runs)), tables)
    long_table(4, [("DST Ensemble", "disagreement", 0.04, 0.035, "ok", ""),
                   ("LTR Ensemble", "kl", np.nan, 0.056, "missing",
                    "no finished run of this row")]).to_parquet(tables / "table4.parquet")
    sweep = [("DST Ensemble", metric, value, np.nan, "ok", "")
             for metric, value in (("individual_acc", 90.0), ("acc", 92.0), ("kl", 0.1))]
    frame = long_table(8, sweep)
    pd.concat([frame, frame.assign(sparsity=0.9)]).to_parquet(tables / "table8.parquet")
    path = make_paper(TableContext("smoke", RunStore(runs), seeds=1),  # as Table 1 was written
                      output_dir=tmp_path / "paper", page_only=True)
    return path, table1


@pytest.fixture
def made(tmp_path):
    path, _ = paper_page(tmp_path)
    return path, path.read_text()


def section(text, anchor):
    """The HTML of one table's or figure's section."""
    start = text.index(f'id="{anchor}"')
    following = text.find("<h2", start)
    return text[start:following if following > 0 else len(text)]


def test_every_table_and_figure_is_on_the_page(made):
    path, text = made
    assert path.name == "index.html"
    for table in TABLES:
        assert f'<h2 id="table{table.number}">Table {table.number}: ' in text
    for figure in FIGURES:
        assert f'<h2 id="figure{figure.key}">Figure {figure.key}: ' in text
    assert len(TABLES) == 13 and [f.key for f in FIGURES] == [
        "1", "2-left", "2-right", "3", "4", "5", "6", "7"]
    assert "regenerated at scale <code>smoke</code>" in text
    assert re.search(r"Harness commit <code>\w+</code>; runs from commit\(s\) "
                     r"<code>abc1234</code>", text)
    # drawn figures are embedded, so the page is readable offline on its own
    for key in ("4", "5", "6"):
        assert '<img src="data:image/png;base64,' in section(text, f"figure{key}")
    assert (path.parent / "figures" / "figure4.png").is_file()


def test_ours_the_paper_and_the_difference_uncoloured_at_smoke_scale(made):
    _, text = made
    table1 = section(text, "table1")
    # DST: ours 97.00 beside the paper's 96.30; NLL 0.200 beside 0.122: at smoke scale ours
    # ran on digits with a small network, so neither is marked better or worse
    assert "<td>97.00</td><td>96.30</td><td>+0.70</td>" in table1
    assert "<td>0.200</td><td>0.122</td><td>+0.078</td>" in table1
    assert 'class="better"' not in text and 'class="worse"' not in text
    assert ("Ours: digits / wrn10_2 at scale <code>smoke</code> (layered with "
            "<code>gin/scale/smoke.gin</code>)") in table1
    table4 = section(text, "table4")
    assert "<td>0.040</td><td>0.035</td><td>+0.005</td>" in table4
    # the table's notes are on the page as in its markdown
    assert "<li>Rows are the runs of Tables 1 (CIFAR-10) and 2" in table4


def test_the_page_says_what_the_markdown_says(made):
    path, text = made
    markdown = (path.parent / "tables" / "table1.md").read_text()
    intro = markdown.split("\n\n|")[0].split("\n\n")[1:]  # the paragraphs under the title
    assert len(intro) >= 3
    for paragraph in intro:
        assert f'<p class="note">{render.inline(paragraph)}</p>' in section(text, "table1")


def test_missing_tables_rows_cells_and_figures_are_named_with_why(made):
    _, text = made
    listed = section(text, "missing") if 'id="missing"' in text else text.split(
        "<h2 id=\"table1\"")[0]
    reasons = re.findall(r'<li class="missing">(.*?)</li>', listed)
    assert "Table 2: not made yet: run `make paper SCALE=smoke`" in reasons
    assert any(r.startswith("Table 1: MIMO, M = 3, S = 0: no finished run") for r in reasons)
    assert any(r.startswith("Table 1: DST Ensemble (dst_m3_s08): cAcc % not measured")
               for r in reasons)
    assert any(r.startswith("Table 4: ") and "LTR Ensemble" in r
               and "no finished run of this row" in r for r in reasons)
    # Figure 3 shares Table 1's (fake) DST run, its cadence only observing; it names what the
    # run lacks for it
    assert any(r.startswith("Figure 3: ") and "/dst-" in r for r in reasons)
    assert any(r.startswith("Figure 2-left: ") for r in reasons)  # fake runs cannot replay
    # Figure 7 draws Table 2's rows: at smoke scale they are Table 1's configurations (digits
    # stand in for both data sets), so the runs of Table 1.
    assert not any(r.startswith(("Figure 4", "Figure 5", "Figure 6", "Figure 7", "Table 8"))
                   for r in reasons)
    assert '<h2 id="figure1">' in text and "Nothing to regenerate" in section(text, "figure1")


def test_figure5_draws_edst_at_a_fixed_budget_from_its_rows_and_the_runs_they_reuse(tmp_path):
    runs = tmp_path / "runs"
    sources = Sources(TableContext("smoke", RunStore(runs), ROOT / "gin"), tmp_path / "tables",
                      TABLES, FIGURES)
    with pytest.raises(FigureUnavailable, match="no finished run of .*figure5/ at scale"):
        sources.figure_runs("5")
    table1 = table1_runs(runs)
    assert sources.figure_runs("5") == [("EDST Ensemble (edst_m3_s08)", table1["edst_m3_s08"])]
    m2 = figure5_rows(runs)
    assert sources.figure_runs("5") == [("EDST Ensemble (edst_m2_s08)", m2),
                                        ("EDST Ensemble (edst_m3_s08)", table1["edst_m3_s08"])]
    dst = sources.rows_of(sources.table_runs(1), "dst")
    assert [run for _, run in dst] == [table1["dst_m3_s08"]]
    fig = figures.fixed_budget_figure(dst, sources.figure_runs("5"))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    fixed = lines["EDST Ensemble at a fixed budget: ensemble"]
    assert list(fixed.get_xdata()) == [2, 3]  # one point per run: its M
    assert list(lines["DST Ensemble (dst_m3_s08), first m: ensemble"].get_xdata()) == [
        1, 2, 3]


def test_a_printed_row_whose_runs_ran_on_another_data_set_names_them():
    # Table 6 at smoke scale: the CIFAR-10 row's run is on digits, listed after the paper's
    frame = pd.DataFrame([
        {"table": 6, "dataset": "cifar10", "method": "FGE", "M": 5, "sparsity": 0.0,
         "status": "missing", "seeds": 0, "paper_acc": 96.35},
        {"table": 6, "dataset": "digits", "method": "FGE", "M": 5, "sparsity": 0.0,
         "row": "fge_m5_c10", "status": "ok", "seeds": 1, "acc": 99.4},
        {"table": 6, "dataset": "cifar10", "method": "Snapshot", "M": 12, "sparsity": 0.0,
         "status": "missing", "seeds": 0, "paper_acc": 96.27},
    ]).reindex(columns=list(wide.COLUMNS))
    missing = wide.table_model(frame, 6, "smoke", []).missing
    assert missing == ["FGE, M = 5, S = 0: no run of ours on cifar10: fge_m5_c10 ran on "
                       "digits",
                       "Snapshot, M = 12, S = 0: no finished run of this row (its method or "
                       "suite is not built, or it has not run)"]


def test_a_table_that_cannot_be_made_is_named_with_its_command_and_error(tmp_path):
    gin = tmp_path / "gin"
    (gin / "table5").mkdir(parents=True)  # no row file of its own, none of Table 1 to reuse
    (gin / "scale").mkdir()
    (gin / "scale" / "smoke.gin").write_text("")
    out = tmp_path / "out"
    context = TableContext("smoke", RunStore(tmp_path / "runs"), gin, seeds=1)
    failed = paper.make_table(PAPER.table(5), context, out)
    assert failed.path is None and "--table=5 --scale=smoke` failed" in failed.missing
    assert "the catalogue reuses row table1/dst_m3_s08" in failed.missing
    assert "python -m harness.tables" in (out / "logs" / "table5.log").read_text()


def test_unknown_scale_is_refused(tmp_path, capsys):
    assert paper.main(["--scale=huge", f"--output_dir={tmp_path}", "--page_only"]) == 2
    assert "--scale must be one of smoke, cpu, paper" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_figure3_rows_are_dst_and_edst_saving_trajectories():
    import gin

    from harness.experiment.config import parse

    rows = figure_rows(figure("3"), at_scale("smoke"))
    assert [(row.name, row.method) for row in rows] == [
        ("dst", "DST Ensemble"), ("dst_c100", "DST Ensemble"), ("edst", "EDST Ensemble"),
        ("edst_c100", "EDST Ensemble")]
    for row, method in zip(rows, ("dst", "dst", "edst", "edst")):
        assert row.gin_files[1].endswith("gin/scale/smoke.gin")
        parse(row.gin_files)
        assert gin.query_parameter("Experiment.method") == method
        assert gin.query_parameter("trajectory_checkpoints.every_epochs") == 10
    assert all(len(row.gin_files) == 1 for row in figure_rows(figure("3"), at_scale("paper")))
    # the paper's CIFAR-100 panels stay on CIFAR-100 where the scale picks CIFAR-10 arrays
    for row in figure_rows(figure("3"), at_scale("cpu")):
        parse(row.gin_files)
        expected = "cifar100" if row.name.endswith("_c100") else "npz"
        assert gin.query_parameter("Experiment.dataset") == expected, row.name


def test_a_long_table_written_despite_failed_rows_is_shown_with_the_error(tmp_path):
    tables = tmp_path / "paper" / "smoke" / "tables"
    tables.mkdir(parents=True)
    long_table(4, [("DST Ensemble", "kl", 0.1, 0.095, "ok", "")]).to_parquet(
        tables / "table4.parquet")
    outcome = page.Outcome(3.0, path=tables / "table4.parquet",
                           missing="`python -m harness.tables --table=4` failed: 1 row(s) "
                                   "could not run")
    outcomes = {table.number: page.Outcome(0.0, missing="not made") for table in TABLES}
    text = page.page(PAPER, "smoke", "abc", {**outcomes, 4: outcome},
                     {figure.key: page.Outcome(0.0) for figure in FIGURES})
    table4 = section(text, "table4")
    assert "Missing: `python -m harness.tables --table=4` failed: 1 row(s)" in table4
    assert "<td>0.100</td><td>0.095</td>" in table4
    assert "<li class=\"missing\">Table 4: `python -m harness.tables --table=4` failed" in text


def test_the_uniform_protocols_page_and_the_printed_one_link_each_other(made, tmp_path):
    printed, _ = made
    assert "Protocol <b>printed</b>" in printed.read_text()
    assert "-uniform/" not in printed.read_text()  # no uniform page yet: no link to one
    uniform = make_paper(TableContext("smoke", RunStore(tmp_path / "runs"), seeds=1),
                         output_dir=tmp_path / "paper", page_only=True, protocol="uniform")
    assert uniform == tmp_path / "paper" / "smoke-uniform" / "index.html"
    assert "Protocol <b>uniform</b>" in uniform.read_text()
    assert 'href="../smoke/index.html"' in uniform.read_text()
    # the printed page, written again from what exists, links the uniform one at every table
    text = printed.read_text()
    assert 'href="../smoke-uniform/index.html"' in text
    assert 'href="../smoke-uniform/index.html#table1">this table under the uniform' in text


def test_each_table_of_the_uniform_page_runs_with_the_uniform_protocol(tmp_path, monkeypatch):
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return paper.subprocess.CompletedProcess(command, 1, "", "error: stop here")

    monkeypatch.setattr(paper.subprocess, "run", run)
    context = TableContext("smoke", RunStore(tmp_path / "runs"), ROOT / "gin",
                           bindings=("import my_methods",))
    paper.make_paper(context, tmp_path / "paper", protocol="uniform", retrain_stale=True)
    tables = [command for command in commands if "harness.tables" in command]
    assert tables and all(f"--gin_file={ROOT / 'gin/protocol/uniform.gin'}" in command
                          and "--gin_bindings=import my_methods" in command
                          and "--retrain_stale" in command for command in tables)
