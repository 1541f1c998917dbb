"""`python -m harness.demo`: harness/tables/demo.py."""
import sys

from harness.tables.demo import main

if __name__ == "__main__":
    sys.exit(main())
