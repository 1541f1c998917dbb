"""`python -m harness.bench`: harness/bench/suite.py."""
import sys

from harness.bench.suite import main

if __name__ == "__main__":
    sys.exit(main())
