"""`python -m harness.bench`: the command of harness/bench/suite.py (its docstring is the usage),
kept here so that --help and a flag mistake answer before torch loads."""
import sys

from harness.core import cli


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.bench", cli.module_doc("harness.bench.suite"))
    parser.path("output_dir", "build/bench", "where bench.json goes")
    parser.strings("only", None, "run only these benchmarks (comma-separated)")
    parser.integers("sparse_model", (16, 4), "DEPTH,WIDTH of the WRN of sparse_inference "
                                             "(WRN-16-4: WRN-28-10 at batch 64 alone takes 10 "
                                             "minutes on one core)")
    parser.integers("sparse_batches", (1, 64), "batch sizes of sparse_inference")
    parser.boolean("quick", False, "fewer rounds and steps")
    parser.strings("stream_peak", None, "FOLDER,COUNT: internal, one corrupted_memory probe")
    args = parser.parse(argv)
    from harness.bench import suite

    return suite.run(args)


if __name__ == "__main__":
    sys.exit(main())
