"""Planned training and test FLOPs of a configuration, without training:

    python -m harness.flops --gin_file=gin/edst.gin [--gin_file=...] [--gin_bindings=...]

prints one JSON object (harness.experiment.Experiment.flops_report). A configuration mistake
is one line on stderr and exit status 2.
"""
import argparse
import json
import sys

from harness.config import first_line, parse
from harness.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.flops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", required=True,
                        help="gin files, applied in order")
    parser.add_argument("--gin_bindings", action="append", default=[],
                        help="gin bindings applied after the files")
    args = parser.parse_args(argv)
    from harness.experiment import Experiment  # after argparse: --help stays instant

    try:
        parse(args.gin_file, args.gin_bindings)
        report = Experiment().plan_flops()
    except (UserError, ValueError, TypeError, KeyError, RuntimeError) as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
