"""The cell model (harness/tables/render.py): one format per measure, the same in markdown and on the
page; Δ coloured against the paper only at scale `paper`; missing numbers with why; which data
and model our numbers come from."""
import re

import numpy as np
import pandas as pd
import pytest

from harness.tables import long, render, wide
from harness.tables.catalogue import PAPER
from harness.tables.long import LONG_COLUMNS
from tests.fakes import cells


def long_frame(rows, dataset="digits", model="wrn10_2"):
    """A Table 11 frame: (method, metric, ours, paper, status, reason) per printed number."""
    frame = pd.DataFrame([{"table": 11, "dataset": dataset, "model": model, "method": method,
                           "M": 3, "sparsity": 0.8, "setting": "svhn", "metric": metric,
                           "row": "dst_m3_s08", "value": ours, "value_std": np.nan,
                           "paper": theirs, "difference": ours - theirs, "status": status,
                           "seeds": 1 if status == "ok" else 0, "reason": reason,
                           "git_commit": "abc1234" if status == "ok" else ""}
                          for method, metric, ours, theirs, status, reason in rows])
    return frame.reindex(columns=list(LONG_COLUMNS))


def wide_frame(scale="smoke", dataset="digits", model="wrn10_2"):
    """Table 1 with two rows of ours (DST better than the paper in accuracy, worse in NLL) and
    the paper's MIMO row missing."""
    rows = [{"table": 1, "dataset": dataset, "model": model, "method": "DST Ensemble", "M": 3,
             "sparsity": 0.8, "row": "dst_m3_s08", "status": "ok", "seeds": 2, "acc": 97.0,
             "acc_std": 0.5, "nll": 0.2, "ece": 0.01, "paper_acc": 96.3, "paper_nll": 0.122,
             "paper_ece": 0.01, "paper_cacc": 78.8, "scale": scale, "git_commit": "abc1234"},
            {"table": 1, "dataset": "cifar10", "model": "wrn28_10", "method": "MIMO", "M": 3,
             "sparsity": 0.0, "status": "missing", "seeds": 0, "paper_acc": 96.4,
             "paper_nll": 0.123, "paper_ece": 0.01, "scale": scale}]
    return pd.DataFrame(rows).reindex(columns=list(wide.COLUMNS))


def both(model: render.Table) -> tuple[str, str]:
    return render.markdown(model), render.html(model)


def test_auroc_has_the_papers_four_decimals_in_markdown_and_on_the_page():
    frame = long_frame([("DST Ensemble", "auroc", 0.81234, 0.7858, "ok", "")])
    markdown, page = both(long.table_model(frame, PAPER.table(11), "smoke", []))
    assert cells(markdown, "DST Ensemble (dst_m3_s08)")[5:8] == ["0.8123", "0.7858", "+0.0265"]
    assert "<td>0.8123</td><td>0.7858</td><td>+0.0265</td>" in page


@pytest.mark.parametrize("metric, digits", [(name, item.digits)
                                            for name, item in render.MEASURES.items()])
def test_every_measure_reads_the_same_in_markdown_and_html(metric, digits):
    item = render.MEASURES[metric]
    model = render.Table("t", [], ["ours"], [[render.Cell(item.ours(12.3456789, 0.25))]])
    markdown, page = both(model)
    text = (f"{12.3456789:.{digits}f} ± {0.25:.{digits}f}" if digits >= 0
            else "1.23e+01 ± 2.50e-01")
    assert cells(markdown, text) == [text] and f"<td>{text}</td>" in page


def test_delta_is_coloured_against_the_paper_only_at_paper_scale():
    smoke = render.html(wide.table_model(wide_frame("smoke"), 1, "smoke", []))
    assert "<td>97.00 ± 0.50</td><td>96.30</td><td>+0.70</td>" in smoke
    assert 'class="better"' not in smoke and 'class="worse"' not in smoke
    assert "not marked better or worse" in smoke

    ours = wide_frame("paper", dataset="cifar10", model="wrn28_10")
    page = render.html(wide.table_model(ours, 1, "paper", []))
    assert '<td>97.00 ± 0.50</td><td>96.30</td><td class="better">+0.70</td>' in page
    assert '<td>0.200</td><td>0.122</td><td class="worse">+0.078</td>' in page
    assert "<td>0.010</td><td>0.010</td><td>+0.000</td>" in page  # equal: neither


def test_long_tables_colour_by_their_metrics_direction_at_paper_scale():
    frame = long_frame([("DST Ensemble", "auroc", 0.7, 0.7858, "ok", ""),
                        ("EDST Ensemble", "auroc", 0.9, 0.7858, "ok", "")],
                       dataset="cifar10", model="wrn28_10")
    page = render.html(long.table_model(frame, PAPER.table(11), "paper", []))
    assert '<td class="worse">-0.0858</td>' in page and '<td class="better">+0.1142</td>' in page


def test_missing_rows_and_cells_say_why_in_both_formats():
    frame = wide_frame()
    model = wide.table_model(frame, 1, "smoke", [])
    markdown, page = both(model)
    reason = "no finished run of this row (its method or suite is not built, or it has not run)"
    assert cells(markdown, "MIMO")[4] == f"missing: {reason}"
    assert f'<td class="missing">missing: {reason}</td>' in page
    assert f"MIMO, M = 3, S = 0: {reason}" in model.missing
    # cAcc has the paper's number alone: its own column, and ours named as not measured
    assert "cAcc % (paper)" in model.header and "cAcc %" not in model.header
    assert any(text.startswith("DST Ensemble (dst_m3_s08): cAcc % not measured")
               for text in model.missing)

    frame = long_frame([("LTR Ensemble", "auroc", np.nan, 0.7858, "missing",
                        "svhn is not on disk")])
    markdown, page = both(long.table_model(frame, PAPER.table(11), "smoke", []))
    assert cells(markdown, "LTR Ensemble (dst_m3_s08)")[-1] == "missing: svhn is not on disk"
    assert '<td class="missing">missing: svhn is not on disk</td>' in page


def test_a_number_one_run_measured_and_another_did_not_is_named_in_its_cell():
    frame = wide_frame()
    frame = pd.concat([frame, frame.iloc[:1].assign(row="dst_c", cacc=70.0)], ignore_index=True)
    model = wide.table_model(frame, 1, "smoke", [])
    markdown, page = both(model)
    assert cells(markdown, "DST Ensemble (dst_m3_s08)")[model.header.index("cAcc %")] == \
        "not measured"
    assert cells(markdown, "DST Ensemble (dst_c)")[model.header.index("cAcc %")] == "70.00"
    assert '<td class="missing">not measured</td>' in page


def test_a_column_without_any_number_is_left_out():
    header = wide.table_model(wide_frame(), 1, "smoke", []).header
    assert "aAcc %" not in " ".join(header) and "ms/img" not in header
    assert header[header.index("Acc %"):][:3] == ["Acc %", "paper", "Δ"]


def test_each_table_says_which_data_and_model_its_numbers_come_from():
    model = wide.table_model(wide_frame(), 1, "smoke", ["gin/scale/smoke.gin"])
    markdown, page = both(model)
    statement = "Ours: digits / wrn10_2 at scale `smoke` (layered with `gin/scale/smoke.gin`)"
    assert statement in markdown
    assert re.sub(r"`([^`]+)`", r"<code>\1</code>", statement) in page
    # rows differ (ours on digits, the paper's missing row on CIFAR-10): said per row
    assert cells(markdown, "DST Ensemble (dst_m3_s08)")[1] == "digits / wrn10_2"
    assert cells(markdown, "MIMO")[1] == "cifar10 / wrn28_10"
    assert "<td class=\"name\">digits / wrn10_2</td>" in page

    same = wide_frame("paper", dataset="cifar10", model="wrn28_10")
    model = wide.table_model(same, 1, "paper", [])
    assert "data / model" not in model.header
    assert "Ours: cifar10 / wrn28_10 at scale `paper`" in render.markdown(model)


def test_a_difference_that_rounds_to_zero_is_plain_zero():
    cell = render.MEASURES["acc"].difference(96.001, 96.003, coloured=True)
    assert cell == render.Cell("+0.00")


def test_notes_are_paragraphs_and_lists_in_both_formats():
    model = render.Table("Table 9", ["intro with `code`"], ["a"], [[render.Cell("1")]],
                         notes=["", "A paragraph.", "", "- one", "- two"])
    markdown, page = both(model)
    assert markdown.endswith("A paragraph.\n\n- one\n- two\n")
    assert '<p class="note">intro with <code>code</code></p>' in page
    assert page.endswith('<p class="note">A paragraph.</p>\n'
                         '<ul class="note"><li>one</li><li>two</li></ul>')


def test_an_unknown_metric_is_named():
    frame = long_frame([("DST Ensemble", "brier", 0.1, np.nan, "ok", "")])
    with pytest.raises(ValueError, match="'brier' has no cell format"):
        long.table_model(frame, PAPER.table(11), "smoke", [])
