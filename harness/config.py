"""Parsing gin configuration: layered files then bindings, with one clear error for any
mistake in them; comparing two configurations binding by binding."""
import re
from pathlib import Path
from typing import Sequence

import gin

from harness.errors import UserError, first_line
from harness.typecheck import check_bindings


def parse(gin_files: Sequence[str], bindings: Sequence[str] = ()) -> None:
    """Clears any previous configuration, then applies `gin_files` in order (later files
    override earlier ones, e.g. a method file then a scale file) and then `bindings`."""
    import methods  # noqa: F401  registers every method's configurables before parsing

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


BINDING = re.compile(r"^(\S+)\s*=\s*(.*)$")


def bindings(config: str) -> dict[str, str]:
    """A configuration as `gin.config_str()` writes it -> {binding: value as text}; a value
    may continue on indented lines, and how its whitespace is laid out does not count."""
    values: dict[str, str] = {}
    name = None
    for line in config.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = BINDING.match(line)
        if match and not line[0].isspace():
            name = match.group(1)
            values[name] = match.group(2)
        elif line.startswith(("import ", "from ")):
            values[line.strip()] = ""
        elif name is not None:
            values[name] += line
    return {name: " ".join(value.split()) for name, value in values.items()}


def config_differences(recorded: str, now: str) -> list[str]:
    """'<binding> (<recorded value> recorded, <value now> now)' for each binding that differs
    between two configurations."""
    old, new = bindings(recorded), bindings(now)
    return [f"{name} ({old.get(name, 'unset')} recorded, {new.get(name, 'unset')} now)"
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]
