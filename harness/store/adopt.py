"""Files runs made with `python -m harness.run --output_dir=DIR` into the run store
(harness/store/runs.py), so that the tables, the page, the launcher and `harness.compare` reuse
them exactly as if the store had trained them:

    python -m harness.adopt RUN_DIR [RUN_DIR ...] [--runs_dir=runs] [--move] [--dry_run]

Each RUN_DIR goes to `<runs_dir>/<method>-<configuration id>/seed<k>/`, the place the store
gives the configuration it recorded (`config.gin`), as it is: its records, checkpoints and
provenance unchanged. It is copied into a temporary sibling inside the store (`.seed<k>.new`,
every file synced to the disk), then renamed into place under the store's training lock, so a
crash leaves the run in the store whole or not at all; `--move` removes RUN_DIR only once its
copy is in place. A RUN_DIR is never overwritten in the store: where the store holds that
configuration and seed already, one line `already in the store: <path>` (exit 0 where it is
the same run: equal summary and metrics; exit 2 where another run sits there).

Every RUN_DIR is checked before anything is written; the first that cannot be adopted is
refused in one line, exit 2, and nothing is written for any: one being trained (its lock, or
the store's for its place, held by another process: named), an unfinished one (resume it
first), a damaged one (harness/store/readers.py), and one trained under settings that this
code no longer gives its configuration (a default changed since: harness/store/
configuration.py `trained_configuration`), which the store would pass off as today's. A run trained at another commit is adopted
with its provenance, the line saying what changed since (harness/core/provenance.py), as the
tables say when they reuse it.
"""
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness.core import cli, provenance
from harness.core.durable import DiskFull, no_room, sync_path
from harness.core.errors import UserError
from harness.store import paths, readers
from harness.store.configuration import identity_differences, trained_configuration
from harness.store.locks import describe, running, training_lock
from harness.store.record import foreign_entries, is_finished, staging_dir
from harness.store.runs import RunStore

INTERRUPTED = "interrupted: the run being copied was discarded; adopt it again"


def flags() -> cli.Flags:
    parser = cli.Flags("python -m harness.adopt", __doc__, variadic="run_dir")
    parser.path("runs_dir", "runs", "the run store to file the runs into")
    parser.boolean("move", False, "remove each RUN_DIR once its copy is in the store")
    parser.boolean("dry_run", False, "say where each run would go; write nothing")
    return parser


@dataclass(frozen=True)
class Adoption:
    source: Path
    target: Path
    note: str  # how its code compares with this checkout's ('' where it is this commit's)
    in_store: bool  # the same run is at `target` already


def plan(source: Path, store: RunStore) -> Adoption:
    """Where `source` goes in the store, decided before anything is written; a UserError
    (one line) where it cannot go."""
    if not source.is_dir():
        raise UserError(f"{source} is not a folder: give the --output_dir of a run")
    foreign = foreign_entries(source)
    if foreign or not paths.config(source).is_file():
        held = f"it holds {foreign[0]}" if foreign else f"it has no {paths.CONFIG}"
        raise UserError(f"{source} is not a run directory of this harness ({held}); only a "
                        f"run `python -m harness.run --output_dir` wrote can be adopted")
    holder = running(source)
    if holder is not None:
        raise UserError(f"{source} is being trained by {describe(holder)}; adopt it once it "
                        f"has finished")
    if not is_finished(source):
        raise UserError(f"{source} is unfinished (no {paths.SUMMARY}): finish it with `python "
                        f"-m harness.run --resume --output_dir={source}`, then adopt it")
    damage = readers.run_damage(source)
    if damage:
        raise UserError(damage)
    try:
        operative = readers.operative_config_text(source)
    except FileNotFoundError:
        raise UserError(f"{paths.operative_config(source)} is missing: what the run was "
                        f"trained with cannot be checked; {readers.rerun(source)}") from None
    config = readers.config_text(source)
    try:
        changed = identity_differences(trained_configuration(config, operative), config)
    except UserError as error:
        raise UserError(f"{source}: {error}") from None
    if changed:
        raise UserError(f"{source} was trained with settings this code no longer gives its "
                        f"configuration (a default changed since): {'; '.join(changed)}; the "
                        f"store would pass it off as today's: train it again with this code")
    target = store.find(config)
    if source.resolve() == target.resolve():
        return Adoption(source, target, "", in_store=True)
    holder = running(target)
    if holder is not None:
        raise UserError(f"{target} is being trained by {describe(holder)}; it is left to that "
                        f"process")
    note = provenance.drift(readers.summary(source)["git_commit"]).text
    return Adoption(source, target, note, in_store=target.exists() and same_run(source, target))


def same_run(source: Path, target: Path) -> bool:
    """True where `target` holds the run `source` (equal summary and metrics); a UserError
    where it holds another."""
    damage = is_finished(target) and readers.run_damage(target)
    if (not damage and is_finished(target) and readers.summary(source) == readers.summary(target)
            and readers.metrics(source).equals(readers.metrics(target))):
        return True
    held = (f"a damaged run: {damage}" if damage else
            "another finished run" if is_finished(target) else "an unfinished run")
    raise UserError(f"already in the store: {target} holds {held} of the configuration and "
                    f"seed of {source}; compare them and remove the one you do not want")


def plan_all(sources: list[Path], store: RunStore) -> list[Adoption]:
    """`plan` of every run, each once however it is written."""
    store.check_layout()
    adoptions, places = [], {}
    given = {source.resolve(): source for source in reversed(sources)}  # first spelling kept
    for source in dict.fromkeys(given[source.resolve()] for source in sources):
        adoption = plan(source, store)
        first = places.setdefault(adoption.target, source)
        if first is not source:
            raise UserError(f"{first} and {source} are runs of one configuration and seed "
                            f"({adoption.target}): adopt the one you want")
        adoptions.append(adoption)
    return adoptions


def adopt(adoption: Adoption, store: RunStore) -> None:
    """Copies the run into its place, under the store's lock for it, the store's format
    recorded as for a trained run."""
    source, target = adoption.source, adoption.target
    try:
        store.record_format()
        with training_lock(target):
            if target.exists():  # filed by another process since it was planned
                raise UserError(f"already in the store: {target}; adopt {source} again to "
                                f"compare them")
            staging = staging_dir(target)
            try:
                copy_synced(source, staging)
                os.rename(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            sync_path(target.parent)
    except OSError as error:
        full = no_room(error)
        if full is not None:
            raise DiskFull(Path(full.filename or target),
                           full.strerror or os.strerror(full.errno), "adopt it again") from error
        raise UserError(f"cannot write {source} into the run store {store.root} "
                        f"({error.strerror}): give a writable --runs_dir") from error


def copy_synced(source: Path, staging: Path) -> None:
    """A copy of the run `source` at `staging`, every file and folder synced to the disk, so
    that once it is renamed into place a crash cannot leave it half there; `.partial` files
    (writes a crash cut short) are left out."""
    for folder, _, files in os.walk(source):
        into = staging / Path(folder).relative_to(source)
        into.mkdir()
        for name in files:
            if not name.endswith(".partial"):
                shutil.copy2(Path(folder, name), into / name)
                sync_path(into / name)
    for folder, _, _ in os.walk(staging, topdown=False):
        sync_path(Path(folder))


def adopt_runs(sources: list[Path], runs_dir: Path, *, move: bool = False,
               dry_run: bool = False) -> Iterator[str]:
    """Adopts every run of `sources` into the store at `runs_dir`, every one checked before
    the first is written; yields one line for each as it is done."""
    store = RunStore(runs_dir)
    for adoption in plan_all(sources, store):
        source, target = adoption.source, adoption.target
        moving = move and source.resolve() != target.resolve()
        if adoption.in_store:
            if moving and not dry_run:
                remove_original(source, target)
            removed = f"; {'would remove' if dry_run else 'removed'} {source}"
            yield f"already in the store: {target}" + (removed if moving else "")
            continue
        if not dry_run:
            adopt(adoption, store)
            if moving:
                remove_original(source, target)
        yield (f"{'would be ' if dry_run else ''}{'moved' if move else 'adopted'} {source} -> "
               f"{target}" + (f" ({adoption.note})" if adoption.note else ""))


def remove_original(source: Path, target: Path) -> None:
    """`--move`: the run `source`, now at `target` in the store, removed where it was."""
    try:
        shutil.rmtree(source)
    except OSError as error:
        raise UserError(f"{source} is in the store ({target}) but could not be removed "
                        f"({error.strerror}): remove it yourself") from error
