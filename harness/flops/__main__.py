"""Planned training and test FLOPs of a configuration, without training:

    python -m harness.flops --gin_file=gin/edst.gin [--gin_file=...] [--gin_bindings=...]
        [--module=my_package.my_method]

prints one JSON object (harness.experiment.assemble.Experiment.flops_report). A configuration mistake
is one line on stderr and exit status 2.
"""
import json
import sys

from harness.core import cli
from harness.experiment.config import module_imports, parse
from harness.core.errors import UserError, first_line


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.flops", __doc__)
    parser.repeated("gin_file", "gin files, applied in order", required=True)
    parser.repeated("gin_bindings", "gin bindings applied after the files")
    parser.modules()
    args = parser.parse(argv)
    from harness.experiment.assemble import Experiment  # after parsing: --help stays instant

    parse(args.gin_file, [*module_imports(args.module), *args.gin_bindings])
    try:
        report = Experiment().plan_flops()
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        # gin's, of a configurable that the configuration gives a value it cannot take
        raise UserError(first_line(error)) from error
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
