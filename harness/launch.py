"""`python -m harness.launch`: harness/tables/launch.py."""
import sys

from harness.tables.launch import main

if __name__ == "__main__":
    sys.exit(main())
