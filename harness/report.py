"""Run directories -> comparison tables (parquet for machines, markdown for people)."""
from pathlib import Path

import pandas as pd

from harness.record import read_summary

TABLE_COLUMNS = ("method", "dataset", "model", "M", "acc", "nll", "ece", "train_flops",
                 "training_runs", "seed", "epoch_factor")


def run_row(run_dir: Path) -> dict:
    """One table row from a finished run directory."""
    summary = read_summary(run_dir)
    metrics = summary["metrics"]
    flops_file = run_dir / "flops.json"
    train_flops = (pd.read_json(flops_file, typ="series").get("train_flops")
                   if flops_file.is_file() else None)
    return {"method": summary["method"], "dataset": summary["dataset"],
            "model": summary["model"], "M": summary["num_members"],
            "acc": metrics["test/accuracy"], "nll": metrics["test/nll"],
            "ece": metrics["test/ece"], "train_flops": train_flops,
            "training_runs": summary["training_runs"], "seed": summary["seed"],
            "epoch_factor": summary["epoch_factor"]}


def to_markdown(frame: pd.DataFrame, title: str) -> str:
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = [f"# {title}", "", "| " + " | ".join(frame.columns) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict], stem: Path, title: str) -> pd.DataFrame:
    """Writes `<stem>.parquet` and `<stem>.md`."""
    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(stem.with_suffix(".parquet"), engine="pyarrow", index=False)
    stem.with_suffix(".md").write_text(to_markdown(frame, title))
    return frame
