"""Parsing gin configuration: layered files then bindings, with one clear error for any
mistake in them. A configuration as text (its bindings, differences, identity) is the store's
(harness/store/configuration.py)."""
from pathlib import Path
from typing import Sequence

import gin

from harness.core.errors import UserError, first_line
from harness.core.typecheck import check_bindings
import methods  # noqa: F401  every method's configurables: a method file may bind any of them

_include_roots: set[str] = set()  # folders added to gin's search path for includes


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
        _find_includes_beside(Path(file))
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(bindings),
                                            finalize_config=False)
    except Exception as error:  # gin raises many types (SyntaxError, ValueError, ...)
        raise UserError(f"invalid gin configuration: {first_line(error)}") from error
    check_bindings()


def _find_includes_beside(gin_file: Path) -> None:
    """Includes name files from the checkout's root (`include 'gin/sparse.gin'`), and gin looks
    for them from the working directory first; so that a file named by its path also works
    from elsewhere (an installed wheel run outside the checkout), the folder holding the `gin/`
    folder it sits in is searched next."""
    gin_folder = next((parent for parent in gin_file.resolve().parents if parent.name == "gin"),
                      None)
    if gin_folder is not None and str(gin_folder.parent) not in _include_roots:
        _include_roots.add(str(gin_folder.parent))
        gin.add_config_file_search_path(str(gin_folder.parent))
