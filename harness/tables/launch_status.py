"""The launcher's live status line (harness/tables/launch.py), while its local jobs run or
`--wait` waits on SLURM: every run of the plan in one state, counted on one line
(harness/core/progress.py `StatusLine`: rewritten in place on a terminal, a line of its own
at each change elsewhere):

    sweep: 2/4 finished, 1 running, 1 queued, 0 failed

A run starts in its compute plan status (harness/tables/compute_plan.py; one to submit is
queued), is running once its job is, and ends finished, failed or skipped (trained by another
process meanwhile, harness/tables/run_rows.py `run_seed`) by its job's outcome.
"""
from collections import Counter

from harness.core.progress import StatusLine
from harness.tables.compute_plan import PlannedRun

ALWAYS_SHOWN = ("running", "queued", "failed")
STARTS_AS = {"missing": "queued"}


def key(run: PlannedRun) -> tuple[str, int]:
    return run.name, run.seed


class LaunchStatus:
    def __init__(self, label: str, runs: list[PlannedRun], line: StatusLine | None = None):
        self.label = label
        self.states = {key(run): STARTS_AS.get(run.status, run.status) for run in runs}
        self.line = line or StatusLine()
        self.line.update(self.text())

    def text(self) -> str:
        counts = Counter(self.states.values())
        parts = [f"{counts['finished']}/{len(self.states)} finished",
                 *(f"{counts[state]} {state}" for state in ALWAYS_SHOWN),
                 *(f"{count} {state}" for state, count in sorted(counts.items())
                   if state not in ("finished", *ALWAYS_SHOWN))]
        return f"{self.label}: {', '.join(parts)}"

    def set(self, run: PlannedRun, state: str) -> None:
        self.states[key(run)] = state
        self.line.update(self.text())

    def ended(self, run: PlannedRun, outcome: str) -> None:
        """The job's outcome (`outcome_of`): named in the log, then counted."""
        self.say(f"{run.name} seed {run.seed}: {outcome}")
        self.set(run, "failed" if outcome.startswith("failed")
                 else "skipped" if outcome.startswith("skipped") else "finished")

    def say(self, line: str) -> None:
        self.line.say(line)

    def close(self) -> None:
        self.line.close()
