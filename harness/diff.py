"""`python -m harness.diff`: harness/tables/diff.py."""
import sys

from harness.tables.diff import main

if __name__ == "__main__":
    sys.exit(main())
