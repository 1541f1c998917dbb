"""`python -m harness.migrate_runs`: harness/store/migrate.py."""
import sys

from harness.store.migrate import main

if __name__ == "__main__":
    sys.exit(main())
