"""`python -m harness.paper`: harness/paper/build.py."""
import sys

from harness.paper.build import main

if __name__ == "__main__":
    sys.exit(main())
