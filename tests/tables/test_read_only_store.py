"""A colleague's run store, readable but not writable: the tables, `harness.compare` and the
page read it without writing into it, and a table that would have to train says so in one
line. The store is made read-only for real: a read-only bind mount in a mount namespace of
its own where this runs as root (root writes through file modes), file modes otherwise."""
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.fakes import ROOT, stored_run

# `sh -c` with the store as $0: bind it onto itself, remount that read-only, run the command.
READ_ONLY_MOUNT = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && '
                   'exec "$@"')


def can_mount_read_only(folder) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY_MOUNT, str(folder), "true"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture
def read_only_store(tmp_path):
    """(the store, how to run a command with it read-only)."""
    runs = tmp_path / "runs"
    stored_run(runs, 1, "dense", members=1, acc=0.90)
    stored_run(runs, 1, "dst_m3_s08", members=3, sparsity=0.8, acc=0.92)
    if os.geteuid() != 0:
        for folder, _, files in os.walk(runs):
            for name in [*files, "."]:
                os.chmod(os.path.join(folder, name), 0o555 if name == "." else 0o444)
        yield runs, list
        for folder, _, files in os.walk(runs):
            os.chmod(folder, 0o755)
        return
    if not can_mount_read_only(runs):
        pytest.skip("running as root without mount namespaces: no way to make a folder "
                    "read-only here")
    yield runs, lambda command: ["unshare", "-m", "sh", "-c", READ_ONLY_MOUNT, str(runs),
                                 *command]


def harness(wrap, *args):
    return subprocess.run(wrap([sys.executable, "-m", *map(str, args)]), cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def snapshot(folder):
    return sorted((str(path), path.stat().st_mtime_ns) for path in folder.rglob("*"))


def test_tables_compare_and_the_page_read_a_read_only_store(read_only_store, tmp_path):
    runs, wrap = read_only_store
    before = snapshot(runs)
    report = harness(wrap, "harness.report", "--table=1", "--scale=smoke", f"--runs_dir={runs}",
                     f"--output_dir={tmp_path / 'tables'}")
    assert report.returncode == 0, report.stderr
    frame = pd.read_parquet(tmp_path / "tables" / "table1.parquet")
    assert set(frame[frame.status == "ok"].row) == {"dense", "dst_m3_s08"}
    compare = harness(wrap, "harness.compare", runs, f"--output_dir={tmp_path / 'compare'}")
    assert compare.returncode == 0, compare.stderr
    assert len(pd.read_parquet(tmp_path / "compare" / "compare.parquet")) == 2
    page = harness(wrap, "harness.paper", "--scale=smoke", "--page_only", f"--runs_dir={runs}",
                   f"--output_dir={tmp_path / 'paper'}")
    assert page.returncode == 0, page.stderr
    assert (tmp_path / "paper" / "smoke" / "index.html").is_file()
    assert snapshot(runs) == before


def test_a_table_that_must_train_into_a_read_only_store_says_so(read_only_store, tmp_path):
    runs, wrap = read_only_store
    done = harness(wrap, "harness.tables", "--table=1", "--scale=smoke", f"--runs_dir={runs}",
                   f"--output_dir={tmp_path / 'tables'}", "--noprogress")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: cannot train ") and (
        f"into the run store {runs} (" in done.stderr)
    assert "`python -m harness.report`" in done.stderr
