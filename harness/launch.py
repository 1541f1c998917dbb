"""`python -m harness.launch`: harness/tables/launch.py."""
from absl import app

from harness.tables import launch
from harness.core import cli

if __name__ == "__main__":
    app.run(launch.main, flags_parser=cli.app_flags_parser(launch))
