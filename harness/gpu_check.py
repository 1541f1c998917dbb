"""`python -m harness.gpu_check`: harness/bench/gpu_check.py."""
from absl import app

from harness.bench import gpu_check
from harness.core import cli

if __name__ == "__main__":
    app.run(gpu_check.main, flags_parser=cli.app_flags_parser(gpu_check))
