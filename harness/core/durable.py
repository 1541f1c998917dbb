"""Durable replacement of files: a reader (or a run resumed after a crash or a power cut) sees
either the old file or the whole new one, never a half-written or empty one.

The new content is written beside the target as `<name>.partial`, flushed to the disk
(fsync), renamed over the target, and the rename itself made durable by an fsync of the
folder; without the first fsync a file system may commit the rename before the data.
"""
import os
from pathlib import Path
from typing import Callable


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


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` writes the new content to a temporary path, which then replaces `path`."""
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        durable_replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_report(frame, stem: Path, markdown: str) -> None:
    """`<stem>.parquet` and `<stem>.md`, each replaced durably and only once complete."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stem.with_suffix(".parquet"),
                 lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False))
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(markdown))
