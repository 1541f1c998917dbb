"""A sweep of gin bindings (`python -m harness.launch --sweep=...`, harness/tables/launch.py):
comma lists of values for bindings, and seeds, expanded into runs of the run store
(harness/store/runs.py) that the launcher plans and dispatches as it does a table's rows.

    --sweep='Trainer.lr=0.1,0.05' --sweep='wide_resnet.width=2,4'   4 points: the cross
                                      product, the first flag's values varying slowest
    --seeds=3                         seeds 0, 1, 2 of every point (one number: a count)
    --seeds=0,2                       seeds 0 and 2 (a list: the seeds; one seed k alone: k,k)

A value is a gin literal, as it would follow `NAME = ` in a gin file: a string is quoted
(`--sweep="Experiment.model='resnet18','wide_resnet'"`). The values are split at the commas
outside brackets and quotes, so a comma inside `()`, `[]`, `{}` or a quoted string belongs to
its value: `--sweep='MultiStep.milestones=(0.5,0.75),(0.3,0.6)'` is two tuples.

Every value is checked before anything runs, layered over the sweep's gin files and
bindings as its runs will be: an unknown configurable or parameter, a value gin cannot parse
or of the wrong type for its annotation (harness/core/typecheck.py), or a run its settings'
checks refuse, is one UserError naming the `--sweep` and the problem. The seed is not a
binding to sweep: `--seeds` gives it (harness/store/configuration.py `SEED_BINDING`).
"""
import itertools
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UserError, first_line
from harness.experiment.config import parse
from harness.store.configuration import SEED_BINDING
from harness.store.runs import RunStore
from harness.tables.compute_plan import PlannedRun, distinct, find_status
from harness.tables.context import TableContext
from harness.tables.rows import TableRow

SOURCE = "sweep"  # the runs' `source` in the compute plan and the launcher's lines
OPENING, CLOSING, QUOTES = "([{", ")]}", "'\""


@dataclass(frozen=True)
class SweptBinding:
    flag: str  # the --sweep flag's value, as given: what an error names
    name: str  # [scope/]configurable.parameter
    values: tuple[str, ...]  # gin literals


def swept_binding(flag: str) -> SweptBinding:
    """One `--sweep=NAME=V1,V2,...`, its values split (`split_values`); the seed refused."""
    name, equals, values = flag.partition("=")
    name = name.strip()
    if not equals or not name or "." not in name or any(space in name for space in " \t\n"):
        raise UserError(f"--sweep={flag}: give a binding and its values, "
                        f"NAME=V1,V2 (e.g. --sweep='Trainer.lr=0.1,0.05')")
    if name.rpartition("/")[2] == SEED_BINDING:
        raise UserError(f"--sweep={flag}: the seed is not swept as a binding; give the seeds "
                        f"with --seeds (e.g. --seeds=0,1,2)")
    return SweptBinding(flag, name, tuple(split_values(flag, values)))


def split_values(flag: str, text: str) -> list[str]:
    """The values of `text` split at the commas outside brackets and quotes."""
    values, current, opened, quote = [], "", [], None
    for character in text:
        if quote:
            quote = None if character == quote else quote
        elif character in QUOTES:
            quote = character
        elif character in OPENING:
            opened.append(character)
        elif character in CLOSING:
            if not opened or CLOSING[OPENING.index(opened.pop())] != character:
                raise UserError(f"--sweep={flag}: {character!r} closes no bracket")
        elif character == "," and not opened:
            values.append(current.strip())
            current = ""
            continue
        current += character
    if quote or opened:
        raise UserError(f"--sweep={flag}: {quote or opened[-1]!r} is never closed")
    values.append(current.strip())
    if "" in values:
        raise UserError(f"--sweep={flag}: an empty value; give the values as V1,V2 (a comma "
                        f"inside brackets or quotes belongs to its value)")
    if any("\n" in value for value in values):
        raise UserError(f"--sweep={flag}: a value holds a line break; give one gin value each")
    return values


def seed_list(given: list[int]) -> list[int]:
    """`--seeds`: one number N is seeds 0..N-1 (N >= 1), several are the seeds themselves
    (each >= 0, in increasing order, each once)."""
    if len(given) == 1:
        if given[0] < 1:
            raise UserError(f"--seeds={given[0]}: one number is a count of seeds 0..N-1 and "
                            f"must be >= 1 (seeds of your choice: a list, e.g. --seeds=0,2)")
        return list(range(given[0]))
    if not given or min(given) < 0:
        raise UserError(f"--seeds={','.join(map(str, given))}: the seeds must be integers "
                        f">= 0")
    return sorted(set(given))


@dataclass(frozen=True)
class Sweep:
    gin_files: tuple[str, ...]
    bindings: tuple[str, ...]  # --gin_bindings, under every point's own
    swept: tuple[SweptBinding, ...]
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        """`<first gin file>-<swept names>`: the default folder of its comparison."""
        return "-".join([Path(self.gin_files[0]).stem,
                         *(swept.name.replace("/", "_") for swept in self.swept)])

    def points(self) -> list[tuple[str, ...]]:
        """The bindings of each point of the cross product, the first swept name slowest."""
        return [tuple(f"{swept.name} = {value}" for swept, value in zip(self.swept, values))
                for values in itertools.product(*(swept.values for swept in self.swept))]

    def check(self) -> None:
        """Every swept value over the gin files and bindings, one at a time, so that the error
        names the `--sweep` it comes from; writes nothing."""
        names = [swept.name for swept in self.swept]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise UserError(f"--sweep names {', '.join(twice)} twice: give all its values in "
                            f"one --sweep")
        parse(self.gin_files, self.bindings)  # their own mistakes are not a --sweep's
        for swept in self.swept:
            for value in swept.values:
                try:
                    parse(self.gin_files, [*self.bindings, f"{swept.name} = {value}"])
                except UserError as error:
                    raise UserError(f"--sweep={swept.flag}: {first_line(error)}") from None


def point_label(bindings: tuple[str, ...]) -> str:
    """`NAME=value` of each binding, space-separated (a value may hold commas)."""
    return " ".join(binding.replace(" = ", "=", 1) for binding in bindings)


def sweep_runs(sweep: Sweep, store: RunStore) -> list[PlannedRun]:
    """The sweep's distinct runs with their status (finished, running, queued, failed,
    missing: harness/tables/compute_plan.py `find_status`), after `Sweep.check`; a UserError
    names a run that cannot be planned (a setting out of its range). Writes nothing."""
    sweep.check()
    candidates = []
    for point in sweep.points():
        row = TableRow(point_label(point), Path(sweep.gin_files[0]).stem, sweep.gin_files,
                       source=SOURCE)
        context = TableContext(store=store, bindings=(*sweep.bindings, *point))
        candidates += [PlannedRun(SOURCE, row, context, seed) for seed in sweep.seeds]
    runs = distinct(candidates)
    for run in runs:
        if run.status in ("error", "not built"):
            raise UserError(f"--sweep: the runs of {run.row.name} cannot run: {run.detail}")
        find_status(run)
    return runs
