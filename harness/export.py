"""`python -m harness.export`: harness/experiment/export.py."""
import sys

from harness.experiment.export import main

if __name__ == "__main__":
    sys.exit(main())
