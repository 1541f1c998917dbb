"""`python -m harness.tables`: harness/tables/make.py."""
import sys

from harness.tables.make import main

if __name__ == "__main__":
    sys.exit(main())
