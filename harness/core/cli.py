"""The one command-line convention of every entry point (`python -m harness.<name>`), on absl
flags as the design and uncertainty-baselines use them:

* `--name=value`; booleans `--name` / `--noname` (`--[no]progress` wherever anything is
  drawn: bars on a terminal, one log line per epoch elsewhere, harness/core/progress.py);
* the folder an entry point writes is `--output_dir`;
* a list of plain values is one comma-separated flag (`--batch_sizes=1,64`); gin files and
  bindings, which hold commas, are repeated flags (`--gin_file=a.gin --gin_file=b.gin`);
* `--help` prints the usage and exits 0; a flag mistake is one line `error: ...`, exit 2.

Each entry point keeps its own `FlagValues`, so entry points imported together (the tests)
never share or clash over a flag, and `main(argv)` can be called more than once.
"""
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

from absl import flags


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

    def boolean(self, name: str, default: bool, help: str = "") -> None:
        self._define(flags.DEFINE_bool, name, default, help)

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
        """`argv` without the program name (None: the command line). Exits 0 after `--help`,
        2 with one line after a mistake."""
        argv = sys.argv[1:] if argv is None else list(argv)
        self.values.unparse_flags()
        try:
            rest = self.values([self.prog, *argv])[1:]
        except flags.Error as error:
            usage_error(str(error).splitlines()[0])
        if self.values.help:
            print(self.help())
            raise SystemExit(0)
        missing = sorted(name for name in self.required if self.values[name].value in (None, []))
        if missing:
            usage_error(f"--{missing[0]} is required (see --help)")
        if self.variadic:
            if not rest:
                usage_error(f"expected one or more {self.variadic.upper()} (see --help)")
        elif len(rest) != len(self.positionals):
            given = f"got {len(rest)}: {' '.join(rest)}" if rest else "got none"
            usage_error(f"expected {len(self.positionals)} argument(s) "
                        f"{' '.join(self.positionals).upper()}, {given}")
        parsed = {name: self.values[name].value for name in self.values}
        for name in self.integer_lists:
            if parsed[name] is not None:
                try:
                    parsed[name] = [int(value) for value in parsed[name]]
                except ValueError:
                    usage_error(f"--{name} must be comma-separated integers, got "
                                f"{','.join(parsed[name])!r}")
        for name in self.paths:
            if parsed[name] is not None:
                parsed[name] = Path(parsed[name])
        if self.variadic:
            parsed[self.variadic] = rest
        else:
            parsed.update({name: Path(value) for name, value in zip(self.positionals, rest)})
        return SimpleNamespace(**parsed)


def usage_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def app_flags_parser(module):
    """The `flags_parser` of an entry point that absl's `app.run` starts on absl's global
    flags (harness.launch, harness.gpu_check), with the same promises: `--help` prints the
    docstring of `module` (the one that defines the flags) and its flags and exits 0; a flag
    mistake is one line, exit 2."""
    def parse(argv: list[str]) -> list[str]:
        if any(arg in ("-h", "--help", "--helpshort") for arg in argv[1:]):
            print(f"{module.__doc__}\n{flags.FLAGS.module_help(module.__name__)}")
            raise SystemExit(0)
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            usage_error(str(error).splitlines()[0])
    return parse
