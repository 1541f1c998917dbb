"""Parsing gin configuration: layered files then bindings, with one clear error for any
mistake in them. A configuration as text (its bindings, differences, identity) is the store's
(harness/store/configuration.py)."""
from pathlib import Path
from typing import Sequence

import gin

from harness.core.errors import UserError, first_line
from harness.core.typecheck import check_bindings
import methods  # noqa: F401  every method's configurables: a method file may bind any of them


def parse(gin_files: Sequence[str], bindings: Sequence[str] = ()) -> None:
    """Clears any previous configuration, then applies `gin_files` in order (later files
    override earlier ones, e.g. a method file then a scale file) and then `bindings`."""
    for file in gin_files:
        try:
            found = Path(file).is_file()
        except OSError as error:  # e.g. a name too long for the file system
            raise UserError(f"gin file {file} cannot be read ({error.strerror})") from error
        if not found:
            raise UserError(f"gin file {file} not found")
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(bindings),
                                            finalize_config=False)
    except Exception as error:  # gin raises many types (SyntaxError, ValueError, ...)
        raise UserError(f"invalid gin configuration: {first_line(error)}") from error
    check_bindings()
