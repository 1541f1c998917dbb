"""`python -m harness.adopt`: harness/store/adopt.py."""
import sys
from pathlib import Path

from harness.core import cli
from harness.store import adopt


@cli.command(interrupted=adopt.INTERRUPTED)
def main(argv: list[str] | None = None) -> int:
    args = adopt.flags().parse(argv)
    # Only now (--help stays instant): every configurable, which a run's place in the store
    # is hashed from.
    import harness.experiment.assemble  # noqa: F401
    for line in adopt.adopt_runs([Path(run) for run in args.run_dir], args.runs_dir,
                                 move=args.move, dry_run=args.dry_run):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
