"""`python -m harness.migrate_runs`: harness/store/migrate.py."""
import sys

import harness.experiment.assemble  # noqa: F401  every configurable: a run's id needs them all
from harness.store.migrate import main

if __name__ == "__main__":
    sys.exit(main())
