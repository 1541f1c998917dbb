"""`python -m harness.report`: harness/tables/report.py."""
import sys

from harness.tables.report import main

if __name__ == "__main__":
    sys.exit(main())
