"""Parsing gin configuration: layered files then bindings, with one clear error for any
mistake in them. A configuration as text (its bindings, differences, identity) is the store's
(harness/store/configuration.py).

A module of one's own (a method in one's own package) enters a configuration as gin's `import`
statement: written in a gin file, or given as `--module=PACKAGE.MODULE` (harness/core/cli.py),
which the commands pass on as the binding `import PACKAGE.MODULE` (`module_imports`). The
import statements among the bindings are parsed before the files, so that a file may bind the
configurables of a module a binding imports; and being bindings, they are recorded with the
others (command.json, config.gin), so that `--resume`, a launcher's jobs and anything that
parses a run's config.gin import the module again."""
import re
from pathlib import Path
from typing import Sequence

import gin

from harness.core.errors import UserError, first_line
from harness.core.typecheck import check_bindings

IMPORT = re.compile(r"^\s*(import|from)\s")  # gin's import statement, as a binding
UNIMPORTED = ("; the module that defines it was never imported: a method of this project is "
              "imported in methods/__init__.py, one of your own by --module=PACKAGE.MODULE (or "
              "an `import PACKAGE.MODULE` line in a gin file)")

_include_roots: set[str] = set()  # folders added to gin's search path for includes


def module_imports(modules: Sequence[str]) -> list[str]:
    """The bindings that import `--module`'s modules (see the module's docstring)."""
    return [f"import {module}" for module in modules]


def parse(gin_files: Sequence[str], bindings: Sequence[str] = ()) -> None:
    """Clears any previous configuration, then applies the import statements among
    `bindings`, `gin_files` in order (later files override earlier ones, e.g. a method file
    then a scale file) and then the other `bindings`."""
    # Every configurable (Experiment, the methods, data, models) may be bound by a file; they
    # load here, not with this module, so that a command's --help imports no torch.
    import harness.experiment.assemble  # noqa: F401
    for file in gin_files:
        try:
            found = Path(file).is_file()
        except OSError as error:  # e.g. a name too long for the file system
            raise UserError(f"gin file {file} cannot be read ({error.strerror})") from error
        if not found:
            raise UserError(f"gin file {file} not found")
        _find_includes_beside(Path(file))
    gin.clear_config()
    imports = [binding for binding in bindings if IMPORT.match(binding)]
    try:
        gin.parse_config(imports)
        gin.parse_config_files_and_bindings(
            list(gin_files), [binding for binding in bindings if binding not in imports],
            finalize_config=False)
    except Exception as error:  # gin raises many types (SyntaxError, ValueError, ...)
        line = first_line(error)
        if "No configurable matching" in line:
            line = line.rstrip(".") + UNIMPORTED
        raise UserError(f"invalid gin configuration: {line}") from error
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
