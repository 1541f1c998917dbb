"""The one rule for progress output: bars on a terminal, one log line per epoch elsewhere
(harness/evaluation/history.py). Redirected to a file, a bar is kilobytes of fragments."""
import sys


def draws_bars(progress: bool) -> bool:
    """Whether to draw bars: `--progress` (the default) and stderr is a terminal."""
    return progress and sys.stderr.isatty()
