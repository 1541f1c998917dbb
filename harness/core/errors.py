"""The one exception type for mistakes a user can fix (bad config, missing data, bad paths),
and the checks of settings that raise it.

Every entry point's `main` is a `harness.core.cli.command`, which prints its first line and
exits 2; anything else is a bug and keeps its traceback. `Interrupted` (Ctrl-C) is printed as
one line too, exit 130.
"""
import math
import numbers


class UserError(Exception):
    """Something in the user's configuration or environment that they must change."""


def first_line(error: BaseException) -> str:
    """The line of an error message that says what is wrong: gin appends 'In call to
    configurable ...' and file context to its messages."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what became of the run and how to continue.
    `exit_status` is what the command exits with: 128 + the signal, as a shell reports it."""

    exit_status = 128 + 2  # SIGINT


def check_integer(setting: str, value, minimum: int | None = None, note: str = "") -> int:
    """`value` of `setting` (e.g. 'Trainer.batch_size') is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{setting} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise UserError(f"{setting} must be >= {minimum}{note}, got {value}")
    return int(value)


def check_number(setting: str, value, *, positive: bool = False) -> float:
    """`value` of `setting` is a finite number (> 0 with `positive`, else >= 0)."""
    bound = "> 0" if positive else ">= 0"
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 0 or (positive and value == 0)):
        raise UserError(f"{setting} must be a finite number {bound}, got {value!r}")
    return float(value)
