"""`python -m harness.figures`: harness/paper/figures.py."""
import sys

from harness.paper.figures import main

if __name__ == "__main__":
    sys.exit(main())
