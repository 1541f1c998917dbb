"""Parsing gin configuration: layered files then bindings, with one clear error for any
mistake in them."""
from pathlib import Path
from typing import Sequence

import gin

from harness.errors import UserError


def parse(gin_files: Sequence[str], bindings: Sequence[str] = ()) -> None:
    """Clears any previous configuration, then applies `gin_files` in order (later files
    override earlier ones, e.g. a method file then a scale file) and then `bindings`."""
    import methods  # noqa: F401  registers every method's configurables before parsing

    for file in gin_files:
        if not Path(file).is_file():
            raise UserError(f"gin file {file} not found")
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(bindings),
                                            finalize_config=False)
    except Exception as error:  # gin raises many types (SyntaxError, ValueError, ...)
        raise UserError(f"invalid gin configuration: {first_line(error)}") from error


def first_line(error: BaseException) -> str:
    """gin appends 'In call to configurable ...' and file context to messages; keep the first
    line, which says what is wrong."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
