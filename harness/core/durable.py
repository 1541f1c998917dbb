"""Durable replacement of files: a reader (or a run resumed after a crash or a power cut) sees
either the old file or the whole new one, never a half-written or empty one.

The new content is written beside the target as `<name>.partial`, flushed to the disk
(fsync), renamed over the target, and the rename itself made durable by an fsync of the
folder; without the first fsync a file system may commit the rename before the data.

A write that fails for want of room (a full disk or quota, or a file over the process's
file-size limit) removes its `.partial`, leaves the target as it was, and is a `DiskFull`:
one line naming the file, not a traceback.
"""
import errno
import os
from pathlib import Path
from typing import Callable

from harness.core.errors import UserError

NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFull(UserError):
    """`path` could not be written for want of room; `then` says how to carry on once there
    is room again (a run: continue it with --resume)."""

    def __init__(self, path: Path, reason: str, then: str = "run the command again"):
        super().__init__(f"cannot write {path}: {reason}; free space (or raise the file-size "
                         f"limit), then {then}")
        self.path, self.reason = path, reason


def sync_path(path: Path) -> None:
    """fsync a file or a folder by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(partial: Path, path: Path) -> None:
    """Moves the complete file `partial` over `path`, durably."""
    sync_path(partial)
    os.replace(partial, path)
    sync_path(path.parent)


def no_room(error: BaseException) -> OSError | None:
    """The OSError of a full disk, quota or file-size limit behind `error`, if one is: writers
    that buffer (torch.save, pyarrow) re-raise it as their own error with it as the context."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in NO_ROOM:
            return error
        error = error.__cause__ or error.__context__
    return None


def atomic_write(path: Path, write: Callable[[Path], object], previous: Path | None = None
                 ) -> None:
    """`write(tmp)` writes the new content to a temporary path, which then replaces `path`;
    with `previous`, the file it replaces is kept there. Raises `DiskFull` when the disk (or
    the file-size limit) has no room for it, `path` untouched."""
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        if previous is not None and path.exists():
            os.replace(path, previous)
        durable_replace(partial, path)
    except Exception as error:
        full = no_room(error)
        if full is None:
            raise
        raise DiskFull(path, full.strerror or os.strerror(full.errno)) from error
    finally:
        partial.unlink(missing_ok=True)


def write_report(frame, stem: Path, markdown: str) -> None:
    """`<stem>.parquet` and `<stem>.md`, each replaced durably and only once complete."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stem.with_suffix(".parquet"),
                 lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False))
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(markdown))
