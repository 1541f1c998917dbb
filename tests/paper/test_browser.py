"""The paper page (harness/paper/page.py) opened in a real browser: headless Chromium, the
distribution's (`make chromium` installs it), driven through playwright. It loads cleanly, its
images decode, its links resolve, its tables hold their models' rows, sort on a click and name
the runs behind each row. Skipped, saying why, where no Chromium or playwright is found, and
under --fast (it starts a browser)."""
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from harness.paper import page
from harness.tables.catalogue import PAPER
from harness.tables.kinds import kind_of
from tests.paper.test_paper import paper_page

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser(request):
    if request.config.getoption("--fast"):
        pytest.skip("starts a browser: not in make test-fast")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: make venv")
    executable = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if executable is None:
        pytest.skip(f"no Chromium on PATH ({', '.join(CHROMIUM_NAMES)}): make chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def made(browser, tmp_path_factory):
    """The smoke page of tests/paper/test_paper.py, built once: (index.html, Table 1's runs)."""
    return paper_page(tmp_path_factory.mktemp("page"))


@pytest.fixture
def opened(browser, made):
    """The page loaded in a fresh tab, with every console error, page error and failed
    request it gave while loading."""
    path, _ = made
    tab = browser.new_page()
    problems = []
    tab.on("console", lambda message: message.type == "error"
           and problems.append(f"console: {message.text}"))
    tab.on("pageerror", lambda error: problems.append(f"script: {error}"))
    tab.on("requestfailed", lambda request: problems.append(
        f"request {request.url}: {request.failure}"))
    tab.goto(path.as_uri(), wait_until="load")
    yield tab, problems
    tab.close()


def column_texts(table, column: int) -> list[str]:
    return table.evaluate(
        "(table, column) => Array.from(table.rows).slice(1).map(row => "
        "row.cells[column].textContent.trim())", column)


def section_table(tab, anchor: str):
    """The first <table> after a section's heading."""
    return tab.locator(f"#{anchor} ~ table").first


def test_the_page_loads_cleanly_its_images_decode_and_its_links_resolve(opened, made):
    tab, problems = opened
    path, _ = made
    assert problems == []
    widths = tab.eval_on_selector_all("img", "images => images.map(image => image.complete "
                                             "&& image.naturalWidth)")
    assert len(widths) >= 4 and all(width > 0 for width in widths)  # Figures 4-7
    links = tab.eval_on_selector_all("a[href]", "links => links.map(link => "
                                                "link.getAttribute('href'))")
    anchors = [link for link in links if link.startswith("#")]
    files = [link for link in links if not link.startswith("#")]
    assert "#table1" in anchors and "tables/table1.md" in files
    for anchor in anchors:
        assert tab.locator(f"[id='{anchor[1:]}']").count() == 1, anchor
    for link in files:
        assert not urlparse(link).scheme, f"{link}: the page links outside its folder"
        assert (path.parent / unquote(link)).is_file(), link


def test_each_table_holds_the_rows_of_its_model(opened, made):
    tab, _ = opened
    path, table1 = made
    tables = path.parent / "tables"
    shown = [number for number in (table.number for table in PAPER.tables)
             if (tables / f"table{number}.parquet").is_file()]
    assert shown == [1, 4, 8]
    for number in shown:
        entry = PAPER.table(number)
        model = kind_of(entry).model(pd.read_parquet(tables / f"table{number}.parquet"), entry,
                                     entry.scale("smoke"), [])
        rows = section_table(tab, f"table{number}").evaluate(
            "table => Array.from(table.rows).map(row => Array.from(row.cells).map(cell => "
            "cell.textContent))")
        assert rows[0] == model.header
        assert rows[1:] == [[cell.text for cell in row] for row in model.rows]
    names = column_texts(section_table(tab, "table1"), 0)
    for row in table1:  # the catalogue's rows of Table 1 that have runs
        assert any(name.endswith(f"({row})") for name in names), row


def test_a_click_on_a_header_sorts_by_that_column_and_a_second_reverses(opened):
    tab, _ = opened
    table = section_table(tab, "table1")
    column = table.locator("th").all_inner_texts().index("Acc %")
    header = table.locator("th").nth(column)
    header.click()
    ascending = column_texts(table, column)
    numbers = [float(text) for text in ascending if text != "-"]
    assert len(numbers) == 3 and numbers == sorted(numbers)
    assert ascending[:len(numbers)] == [f"{n:.2f}" for n in numbers]  # missing ones last
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    descending = column_texts(table, column)
    assert descending[:3] == ascending[:3][::-1] and descending[3:] == ascending[3:]
    assert header.get_attribute("aria-sort") == "descending"


def test_mean_and_std_cells_sort_by_the_mean_and_missing_cells_sort_last(browser):
    tab = browser.new_page()
    cells = ["10.00 ± 0.50", "-", "9.50 ± 2.00", "not measured", "100.00", "+0.70"]
    rows = "".join(f'<tr><td{" class=missing" if text == "not measured" else ""}>{text}</td>'
                   f"<td>{name}</td></tr>" for name, text in enumerate(cells))
    tab.set_content(f'<meta charset="utf-8"><table><tr><th>ours</th><th>name</th></tr>{rows}'
                    f"</table><script>{page.SCRIPT}</script>")
    tab.locator("th").first.click()
    table = tab.locator("table")
    assert column_texts(table, 0) == ["+0.70", "9.50 ± 2.00", "10.00 ± 0.50", "100.00", "-",
                                      "not measured"]
    tab.locator("th").first.click()
    assert column_texts(table, 0) == ["100.00", "10.00 ± 0.50", "9.50 ± 2.00", "+0.70", "-",
                                      "not measured"]
    tab.close()


def test_each_row_names_the_runs_its_numbers_come_from(opened, made):
    tab, _ = opened
    _, table1 = made
    table = section_table(tab, "table1")
    run = table1["dst_m3_s08"]
    cell = table.locator("td", has_text="97.00").first  # the DST row's accuracy
    cell.hover()
    said = cell.evaluate("cell => cell.closest('[title]').title")
    assert f"{run.parent.name}/{run.name}: seed 0, commit abc1234" in said
    assert f"ours from the runs in {run.parent.parent}:" in said
    missing = table.locator("td.missing", has_text="missing: ").first  # a row without runs
    assert missing.evaluate("cell => cell.closest('[title]')") is None
