"""Saving and loading the tensor files of a run directory, durably and without running code
from them.

A run directory may come from someone else. A pickle can name any callable to rebuild an
object, so `torch.load(..., weights_only=False)` of a planted file runs whatever it names.
Every checkpoint is therefore loaded with `weights_only=True`, which unpickles tensors and
plain values (dicts, lists, tuples, numbers, strings) only, and what the harness saves is
kept to those: RNG states are stored as tensors and plain values (harness/engine/train.py).
"""
import pickle
import re
from pathlib import Path

import torch

from harness.core.durable import atomic_write
from harness.core.errors import UserError


# How torch's weights-only unpickler names a class or function it refused to load.
GLOBAL = re.compile(r"GLOBAL (\S+)")


class UnsafeFile(UserError):
    """A file that holds more than tensors and plain values: refused, never unpickled."""


def load(path: Path, map_location=None):
    """`torch.load(path)` with tensors and plain values only; a file that names any other
    class or function is refused with `UnsafeFile`, before anything of it runs. Other failures
    (missing, truncated, damaged bytes) propagate unchanged."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        named = GLOBAL.search(str(error))
        if named is None:  # damaged bytes, not a forbidden name
            raise
        raise UnsafeFile(f"{path} names {named.group(1)}, which loading would run as code: "
                         f"refused (this harness writes tensors and plain values only); delete "
                         f"it unless you trust where it came from") from None



def save(path: Path, content, previous: Path | None = None) -> None:
    """`torch.save(content)` to `path`, durably (harness/core/durable.py `atomic_write`, which
    keeps the file it replaces at `previous` where given). Written through a Python file: a
    full disk then surfaces as the OSError (ENOSPC, EFBIG) behind torch's error, which
    `atomic_write` reports as `DiskFull`; torch's own writer of a path loses the errno."""
    def write(partial: Path) -> None:
        with partial.open("wb") as file:
            torch.save(content, file)

    atomic_write(path, write, previous)
