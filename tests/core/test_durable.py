"""Durable writes (harness/core/durable.py) on a full disk: the report or file being replaced
stays as it was, no `.partial` is left, and the failure is one line naming the file."""
import errno
import os

import pandas as pd
import pytest
import torch

from harness.core.durable import DiskFull, atomic_write, write_report


def full_disk(code=errno.ENOSPC):
    """A write that meets a full disk (ENOSPC), quota (EDQUOT) or file-size limit (EFBIG)."""
    def write(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return write


def test_a_report_on_a_full_disk_keeps_the_previous_one(tmp_path, monkeypatch):
    stem = tmp_path / "reports" / "table1"
    write_report(pd.DataFrame({"acc": [0.9]}), stem, "| acc |\n| 0.9 |\n")
    before = {path.name: path.read_bytes() for path in stem.parent.iterdir()}

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk())
    with pytest.raises(DiskFull) as raised:
        write_report(pd.DataFrame({"acc": [0.5]}), stem, "| acc |\n| 0.5 |\n")

    message = str(raised.value)
    assert message == (f"cannot write {stem}.parquet: No space left on device; free space "
                       f"(or raise the file-size limit), then run the command again")
    assert {path.name: path.read_bytes() for path in stem.parent.iterdir()} == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_writer_that_wraps_the_os_error_is_still_a_full_disk(tmp_path, code):
    """torch.save (into a file) and pyarrow raise their own error with the OSError behind."""
    target = tmp_path / "member.pt"
    target.write_bytes(b"previous")

    def write(partial):
        with partial.open("wb") as file:
            file.write(b"half")
            try:
                full_disk(code)()
            except OSError:
                raise RuntimeError("PytorchStreamWriter failed writing file data/0")

    with pytest.raises(DiskFull, match=f"cannot write {target}: "):
        atomic_write(target, write)
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_other_failures_are_not_taken_for_a_full_disk(tmp_path):
    def write(partial):
        partial.write_bytes(b"half")
        torch.load(tmp_path / "absent.pt")

    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "x.pt", write)
    assert list(tmp_path.iterdir()) == []


def test_the_previous_file_is_kept_beside_when_asked(tmp_path):
    target, previous = tmp_path / "a.pt", tmp_path / "a.pt.previous"
    target.write_text("old")
    atomic_write(target, lambda partial: partial.write_text("new"), previous=previous)
    assert (target.read_text(), previous.read_text()) == ("new", "old")
