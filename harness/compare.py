"""`python -m harness.compare`: harness/tables/compare.py."""
import sys

from harness.tables.compare import main

if __name__ == "__main__":
    sys.exit(main())
