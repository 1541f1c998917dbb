"""`make demo`: every method that has a `gin/<method>.gin`, at smoke scale on the embedded
digits set, then a small Table 1 in `<output_dir>/table1.{parquet,md}`. Finished runs under
`<output_dir>/runs/` are reused, so an interrupted demo resumes."""
from pathlib import Path

import pandas as pd

from harness.core import cli

from harness.tables import render
from harness.tables.context import DEFAULT_GIN_DIR
from harness.core.durable import write_report
from harness.store.record import is_finished
from harness.tables.run_numbers import TIMING, run_row

DEMO_COLUMNS = ("method", "dataset", "model", "M", "sparsity", "acc", "nll", "ece", "cacc",
                "cnll", "cece", "train_flops", "train_flops_ratio", "test_flops_ratio",
                *TIMING, "training_runs", "seed", "epoch_factor")


def write_table(rows: list[dict], stem: Path, title: str) -> pd.DataFrame:
    """A plain table of `run_row`s (`make demo`): `<stem>.parquet` and `<stem>.md`."""
    frame = pd.DataFrame(rows, columns=list(DEMO_COLUMNS))
    write_report(frame, stem, render.frame_markdown(frame, title))
    return frame


def demo(output_dir: Path, gin_dir: Path, progress: bool = True) -> Path:
    from harness.experiment.execute import run_experiment  # torch: not for --help
    from methods import METHODS

    rows = []
    for method in METHODS.names():
        config = gin_dir / f"{method}.gin"
        if not config.is_file():
            print(f"skipping {method}: no {config}")
            continue
        run_dir = output_dir / "runs" / method
        if not is_finished(run_dir):
            print(f"running {method} (smoke scale)")
            run_experiment([str(config), str(gin_dir / "scale" / "smoke.gin")],
                           output_dir=str(run_dir), resume=True, progress=progress)
        rows.append(run_row(run_dir))
    write_table(rows, output_dir / "table1", "Table 1 (demo: smoke scale, digits, CPU)")
    return output_dir / "table1.md"


@cli.command(interrupted="interrupted: run the same command again to continue the demo "
                          "where it stopped")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.demo", __doc__)
    parser.path("output_dir", "reports/demo", "where runs and the table go")
    parser.path("gin_dir", str(DEFAULT_GIN_DIR), "folder of the method gin files")
    parser.progress()
    args = parser.parse(argv)
    table = demo(args.output_dir, args.gin_dir, args.progress)
    print(table.read_text())
    return 0
