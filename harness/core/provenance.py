"""Which code a run was trained with, and whether the code has changed since: so that a table
built from a run trained months ago says so instead of passing its numbers off as today's.

    code_state()         recorded when a run starts (command.json) and when it finishes
                         (summary.json): git_commit, git_dirty, git_diff_hash
    drift(commit)        what changed in CODE_PATHS between a run's commit and HEAD

The diff hash covers `git diff HEAD` (every tracked file's uncommitted change, binary
included) and the *names* of untracked files that .gitignore does not hide: a new module
counts, but its content is not read (untracked files can be large data; commit code you
want to trace). git is asked with a timeout and is never required: without git, or with the
harness installed outside a checkout (a wheel), the commit is "unknown" and `drift` says that
provenance cannot be checked. Only the checkout the harness itself lives in is asked, never
a repository that merely encloses it.
"""
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
CODE_PATHS = ("harness", "methods", "gin")  # what a run's numbers depend on
UNKNOWN = "unknown"
GIT_TIMEOUT_S = 30


def git(*args: str, root: Path | None = None) -> bytes | None:
    """git's output in the harness's checkout, or None when git is missing, slow, fails, or
    that folder is no checkout of its own."""
    root = root or CHECKOUT
    command = ["git", "-C", str(root), "-c", "core.quotepath=off"]
    try:
        top = subprocess.run([*command, "rev-parse", "--show-toplevel"], capture_output=True,
                             timeout=GIT_TIMEOUT_S)
        if top.returncode != 0 or Path(top.stdout.decode().strip()).resolve() != root.resolve():
            return None
        done = subprocess.run([*command, *args], capture_output=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def head_commit(root: Path | None = None) -> str:
    out = git("rev-parse", "--short", "HEAD", root=root)
    return out.decode().strip() if out else UNKNOWN


def code_state(root: Path | None = None) -> dict:
    """The commit, whether the tree differs from it, and a hash of that difference (None
    where clean, or where git cannot tell)."""
    commit = head_commit(root)
    diff = git("diff", "HEAD", "--binary", root=root)
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", root=root)
    if commit == UNKNOWN or diff is None or untracked is None:
        return {"git_commit": commit, "git_dirty": None, "git_diff_hash": None}
    dirty = bool(diff or untracked)
    digest = hashlib.sha256(diff + b"\0untracked\0" + untracked).hexdigest()[:16]
    return {"git_commit": commit, "git_dirty": dirty, "git_diff_hash": digest if dirty else None}


@dataclass(frozen=True)
class Drift:
    """How a run's code compares with this checkout's HEAD. `stale`: True when CODE_PATHS
    changed since its commit (or its commit is not here to compare with), False when they did
    not, None when provenance cannot be checked (no git, or a run recorded without it)."""

    commit: str
    stale: bool | None
    text: str  # empty when the run is of HEAD


def drift(commit: str, root: Path | None = None) -> Drift:
    """What changed in CODE_PATHS between `commit` and HEAD (`git diff --shortstat`)."""
    head = head_commit(root)
    if commit in ("", UNKNOWN) or head == UNKNOWN:
        where = "it recorded no commit" if head != UNKNOWN else "no git checkout here"
        return Drift(commit, None, f"provenance cannot be checked ({where})")
    if git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", root=root) is None:
        return Drift(commit, True, f"trained at commit {commit}, which this checkout does "
                                   f"not have: cannot tell what changed since")
    full = git("rev-parse", f"{commit}^{{commit}}", "HEAD", root=root)
    if full is not None and len(set(full.split())) == 1:
        return Drift(commit, False, "")
    stat = git("diff", "--shortstat", commit, "HEAD", "--", *CODE_PATHS, root=root)
    if stat is None:
        return Drift(commit, None, f"trained at commit {commit}; provenance cannot be checked "
                                   f"(git diff failed)")
    if not stat.strip():
        return Drift(commit, False, f"trained at commit {commit}; {', '.join(CODE_PATHS)} "
                                    f"unchanged since")
    return Drift(commit, True, f"trained at commit {commit}; {'/, '.join(CODE_PATHS)}/ changed "
                               f"since: {stat.decode().strip()}")
