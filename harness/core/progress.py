"""The one rule for progress output: bars on a terminal, one log line per epoch elsewhere
(harness/evaluation/history.py). Redirected to a file, a bar is kilobytes of fragments."""
import sys

from tqdm import tqdm


def draws_bars(progress: bool) -> bool:
    """Whether to draw bars: `--progress` (the default) and stderr is a terminal."""
    return progress and sys.stderr.isatty()


class StatusLine:
    """One line of state that changes (a launcher's `sweep: 2/4 finished, 1 running, ...`):
    on a terminal rewritten in place (a tqdm bar of its text alone), elsewhere printed as a
    line of its own each time it changes. The lines of the log go through `say`, which keeps
    the status below them on a terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = (tqdm(bar_format="{desc}", file=self.stream, leave=True)
                    if self.stream.isatty() else None)
        self.shown = None

    def update(self, text: str) -> None:
        if text == self.shown:
            return
        self.shown = text
        if self.bar is None:
            print(text, file=self.stream, flush=True)
        else:
            self.bar.set_description_str(text)

    def say(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line, file=sys.stdout)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
