"""`python -m harness.gpu_check`: harness/bench/gpu_check.py."""
import sys

from harness.bench.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
