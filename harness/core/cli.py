"""The one command-line convention of every entry point (`python -m harness.<name>`), on absl
flags as the design and uncertainty-baselines use them:

* `--name=value`; booleans `--name` / `--noname` (`--[no]progress` wherever anything is
  drawn: bars on a terminal, one log line per epoch elsewhere, harness/core/progress.py);
* the folder an entry point writes is `--output_dir`;
* a list of plain values is one comma-separated flag (`--batch_sizes=1,64`); gin files and
  bindings, which hold commas, are repeated flags (`--gin_file=a.gin --gin_file=b.gin`);
* `--help` prints the usage and exits 0; a flag mistake is one line `error: ...`, exit 2;
* `--module=PACKAGE.MODULE` (repeated) wherever gin is parsed: one's own methods and
  configurables, imported once the flags are parsed (`import_modules`), then passed on as gin
  `import` bindings (harness/experiment/config.py).

`--help` answers before torch or the methods are imported: an entry point's module imports
what its work needs once its flags are parsed (inside its `main`, or in functions), so that
the usage of every command prints at once (tests/core/test_fast_help.py).

Each entry point keeps its own `Flags` (absl `FlagValues`), so entry points imported together
(the tests) never share or clash over a flag, and `main(argv)` can be called more than once.
Each entry point's `main` is a `command`, which keeps the promises of what a command does
with a mistake, Ctrl-C or a bug, so that no entry point writes them by hand.
"""
import ast
import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

from absl import flags

from harness.core.errors import Interrupted, UserError, first_line

Main = Callable[[Sequence[str] | None], int]


class HelpShown(Exception):
    """`--help` was given and the usage printed: the command has done all it was asked to."""


def command(main: Main | None = None, *, interrupted: str | None = None,
            interrupted_outside_a_run: str = "interrupted") -> Main:
    """The contract of every entry point's `main(argv=None)`, kept here once. The exit status is
    returned rather than raised, so that a test calling `main([...])` sees what the shell sees
    of `sys.exit(main())`:

    * `--help`: the usage on stdout, 0;
    * a user's mistake (`UserError`, a flag mistake): one line `error: <first line>` on
      stderr, 2 (gin appends call and file context the user does not need);
    * Ctrl-C: one line on stderr, 130: `interrupted`, where the command gives it (a command
      that continues by being run again, whichever of its runs was cut short); else an
      `Interrupted`'s own message (the run says what became of it and how to continue it)
      and its `exit_status` (a run preempted by SIGTERM: 143); else
      `interrupted_outside_a_run`;
    * anything else is a bug: it propagates with its traceback.

    Used bare (`@cli.command`) or with the Ctrl-C lines (`@cli.command(interrupted=...)`)."""
    def keep_contract(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except HelpShown:
                return 0
            except UserError as error:
                print(f"error: {first_line(error)}", file=sys.stderr)
                return 2
            except KeyboardInterrupt as interrupt:
                reported = first_line(interrupt) if isinstance(interrupt, Interrupted) else None
                print(interrupted or reported or interrupted_outside_a_run, file=sys.stderr)
                return getattr(interrupt, "exit_status", Interrupted.exit_status)
        return run
    return keep_contract if main is None else keep_contract(main)


class Flags:
    def __init__(self, prog: str, doc: str, positionals: Sequence[str] = (),
                 variadic: str | None = None):
        """`prog`: `python -m harness.<name>`; `doc`: the module docstring, the help's text;
        `positionals`: names of required positional arguments (paths); `variadic`: instead,
        the name of one or more positional arguments, kept as strings (paths or globs)."""
        self.prog = prog
        self.doc = doc.strip()
        self.positionals = tuple(positionals)
        self.variadic = variadic
        self.values = flags.FlagValues()
        self.paths: set[str] = set()
        self.integer_lists: set[str] = set()
        self.required: set[str] = set()
        self.boolean("help", False, "show this help and exit")

    def _define(self, define, name: str, default, help: str, required: bool = False, **kwargs):
        define(name, default, help, flag_values=self.values, **kwargs)
        if required:
            self.required.add(name)

    def string(self, name: str, default: str | None = None, help: str = "", *,
               required: bool = False) -> None:
        self._define(flags.DEFINE_string, name, default, help, required)

    def path(self, name: str, default: str | None = None, help: str = "", *,
             required: bool = False) -> None:
        self._define(flags.DEFINE_string, name, default, help, required)
        self.paths.add(name)

    def integer(self, name: str, default: int | None = None, help: str = "", *,
                required: bool = False, lower_bound: int | None = None) -> None:
        self._define(flags.DEFINE_integer, name, default, help, required,
                     lower_bound=lower_bound)

    def boolean(self, name: str, default: bool | None, help: str = "") -> None:
        """`default` None: the command decides when the flag is not given."""
        self._define(flags.DEFINE_bool, name, default, help)

    def choice(self, name: str, default: str, choices: Sequence[str], help: str = "") -> None:
        flags.DEFINE_enum(name, default, list(choices), help, flag_values=self.values)

    def strings(self, name: str, default: Sequence[str] | None = None, help: str = "") -> None:
        """A comma-separated list."""
        self._define(flags.DEFINE_list, name, None if default is None else list(default), help)

    def integers(self, name: str, default: Sequence[int] | None = None, help: str = "") -> None:
        """A comma-separated list of integers."""
        self._define(flags.DEFINE_list, name,
                     None if default is None else [str(value) for value in default], help)
        self.integer_lists.add(name)

    def repeated(self, name: str, help: str = "", *, required: bool = False) -> None:
        """A flag given once per value (values that may hold commas: gin files, bindings)."""
        self._define(flags.DEFINE_multi_string, name, [], help, required)

    def modules(self) -> None:
        """`--module`, for a command that parses gin: `parse` imports the modules, and the
        command passes them on as gin `import` bindings (harness/experiment/config.py)."""
        self.repeated("module", "a module of your own to import before gin parses, e.g. a "
                                "package's method (PACKAGE.MODULE, on the Python path)")

    def progress(self) -> None:
        self.boolean("progress", True, "progress bars on a terminal; elsewhere, or with "
                                       "--noprogress, log lines instead")

    def help(self) -> str:
        arguments = (f"{self.variadic.upper()} [{self.variadic.upper()} ...]" if self.variadic
                     else " ".join(self.positionals).upper())
        lines = [f"usage: {self.prog} {arguments} [flags]".replace("  ", " "), "", self.doc, "",
                 "flags:"]
        for name in sorted(self.values):
            flag = self.values[name]
            if flag.name != name:
                continue
            shown = f"--[no]{name}" if flag.boolean else f"--{name}"
            value = (",".join(map(str, flag.default)) if isinstance(flag.default, list) else
                     str(flag.default).lower() if flag.boolean else flag.default)
            default = "" if flag.default in (None, []) else f" (default: {value})"
            required = " (required)" if name in self.required else ""
            text = " ".join(flag.help.split()).replace(
                "; repeat this option to specify a list of values", " (repeat the flag for each)")
            lines.append(f"  {shown}: {text}{required}{default}")
        return "\n".join(lines)

    def parse(self, argv: Sequence[str] | None) -> SimpleNamespace:
        """`argv` without the program name (None: the command line). Raises `HelpShown` after
        printing the usage for `--help`, and `UserError` for a mistake (see `command`)."""
        argv = sys.argv[1:] if argv is None else list(argv)
        self.values.unparse_flags()
        try:
            rest = self.values([self.prog, *argv])[1:]
        except flags.Error as error:
            raise UserError(str(error)) from None
        if self.values.help:
            print(self.help())
            raise HelpShown
        missing = sorted(name for name in self.required if self.values[name].value in (None, []))
        if missing:
            raise UserError(f"--{missing[0]} is required (see --help)")
        if self.variadic:
            if not rest:
                raise UserError(f"expected one or more {self.variadic.upper()} (see --help)")
        elif len(rest) != len(self.positionals):
            given = f"got {len(rest)}: {' '.join(rest)}" if rest else "got none"
            raise UserError(f"expected {len(self.positionals)} argument(s) "
                            f"{' '.join(self.positionals).upper()}, {given}")
        parsed = {name: self.values[name].value for name in self.values}
        for name in self.integer_lists:
            if parsed[name] is not None:
                try:
                    parsed[name] = [int(value) for value in parsed[name]]
                except ValueError:
                    raise UserError(f"--{name} must be comma-separated integers, got "
                                    f"{','.join(parsed[name])!r}") from None
        for name in self.paths:
            if parsed[name] is not None:
                parsed[name] = usable_path(f"--{name}", parsed[name])
        if parsed.get("output_dir") is not None and "output_dir" in self.paths:
            check_folder_possible(parsed["output_dir"])
        if self.variadic:
            parsed[self.variadic] = [str(usable_path(self.variadic.upper(), value))
                                     for value in rest]
        else:
            parsed.update({name: usable_path(name.upper(), value)
                           for name, value in zip(self.positionals, rest)})
        import_modules(parsed.get("module", ()))
        return SimpleNamespace(**parsed)


def import_modules(names: Sequence[str]) -> None:
    """Imports the modules of `--module`: their methods and configurables register as they are
    imported, so this happens before any gin file is parsed (and before `--list` lists)."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # the user's module: whatever it raises is theirs to read
            raise UserError(f"--module {name} cannot be imported: {type(error).__name__}: "
                            f"{first_line(error)}") from error


def module_doc(module: str) -> str:
    """The docstring of `module`, read from its source without importing it: the usage of a
    command whose work needs torch (harness/bench/), which its --help must not wait for."""
    source = Path(importlib.util.find_spec(module).origin).read_text()
    return ast.get_docstring(ast.parse(source)) or ""


def usable_path(label: str, value: str) -> Path:
    """`value` as a Path, or UserError where the file system refuses the name itself (too
    long), which every later open, stat or mkdir would raise as an OSError."""
    path = Path(value)
    limit = 255  # NAME_MAX of the usual file systems; a longer name exists on none of them
    long = next((part for part in path.parts if len(part.encode(errors="surrogateescape"))
                 > limit), None)
    if long is not None:
        raise UserError(f"{label}: the name {long[:16]}... is too long ({len(long)} "
                        f"characters; a file system takes at most {limit})")
    try:
        path.exists()
    except OSError as error:
        raise UserError(f"{label} {value} cannot be used ({error.strerror})") from None
    return path


def check_folder_possible(folder: Path) -> None:
    """--output_dir, the folder a command writes: not a file, nor inside one."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                where = "is" if path == folder else f"is inside {path}, which is"
                raise UserError(f"--output_dir {folder} {where} a file, not a folder; choose "
                                f"another --output_dir")
            return

