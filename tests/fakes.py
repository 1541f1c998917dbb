"""Finished runs made without training, as harness/experiment/execute.py leaves them, readers of
rendered tables and a git helper: what the table, report and page tests build on."""
import subprocess
from pathlib import Path

import numpy as np

from harness.store.record import write_json, write_metrics
from harness.store.configuration import seed_binding
from harness.store.runs import RunStore
from harness.tables import catalogue
from harness.tables.context import TableContext
from harness.tables.rows import TableRow, table_rows
from harness.tables.sources import RowRuns, row_configuration

ROOT = Path(__file__).resolve().parents[1]


def cells(markdown: str, first: str) -> list[str]:
    """The cells of the markdown table row whose first cell is `first`."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|")]
    return next(row for row in rows if row[0] == first)


def fake_run(run_dir: Path, *, method="dense_ensemble", members=2, sparsity=0.0, seed=0,
             acc=0.9, nll=0.3, ece=0.05, train_flops=4e9, ratio=4.0, classes=3,
             examples=40, seconds_per_image=None) -> Path:
    """A finished run directory as harness/experiment/execute.py leaves it, without training anything."""
    run_dir.mkdir(parents=True)
    rows = [{"member": "ensemble", "metric": metric, "value": value}
            for metric, value in (("accuracy", acc), ("nll", nll), ("ece", ece))]
    rows += [{"member": f"{i}-{j}", "metric": metric, "value": 0.1 * (i + j)}
             for i in range(members) for j in range(i + 1, members)
             for metric in ("disagreement", "kl")]
    rows = [{"method": method, "suite": "test", "corruption": "clean", "severity": 0, **row}
            for row in rows]
    if sparsity > 0:
        rows += [{"method": method, "suite": "structure", "corruption": "clean",
                  "severity": 0, "member": str(m), "metric": f"density/{layer}",
                  "value": value} for m in range(members)
                 for layer, value in (("conv1", 0.5), ("fc", 1 - sparsity))]
    write_metrics(run_dir / "metrics.parquet", rows)
    write_json(run_dir / "flops.json", {"train_flops": train_flops,
                                        "train_flops_ratio": ratio,
                                        "test_flops_ratio": float(members),
                                        "training_runs": float(members)})
    generator = np.random.default_rng(seed)
    logits = generator.normal(size=(members, examples, classes))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    (run_dir / "predictions").mkdir()
    np.savez(run_dir / "predictions" / "test.npz", log_probs=log_probs.astype(np.float32),
             labels=generator.integers(0, classes, examples))
    write_json(run_dir / "summary.json", {
        "method": method, "dataset": "digits", "model": "wrn10_2", "num_members": members,
        "sparsity": sparsity, "training_runs": float(members), "seed": seed,
        "epoch_factor": 0.06, "git_commit": "abc1234", "config_hash": f"hash{seed}",
        "metrics": {"test/accuracy": acc, "test/nll": nll, "test/ece": ece,
                    **({} if seconds_per_image is None else
                       {f"timing/{metric}": value
                        for metric, value in seconds_per_image.items()})}})
    return run_dir


def fake_row(runs_dir: Path, name: str, paper_name: str, seeds=(0,), table=1, scale="smoke",
             setting=None, **run) -> RowRuns:
    """A row of a table (not necessarily one of the catalogue's) with finished fake runs."""
    row = TableRow(name, paper_name, (f"gin/table{table}/{name}.gin", f"gin/scale/{scale}.gin"),
                   setting)
    return RowRuns(row, [fake_run(runs_dir / name / f"seed{seed}", seed=seed, **run)
                         for seed in seeds], [])


def stored_run(runs_dir: Path, table: int, name: str, seed: int = 0, scale: str = "smoke",
               extra_files=(), bindings=(), **run) -> Path:
    """A finished fake run of a catalogue row, filed in the run store under the row's
    configuration, as `python -m harness.tables` would have left it."""
    context = TableContext(scale, gin_dir=ROOT / "gin", extra_files=extra_files)
    [row] = [row for row in table_rows(catalogue.PAPER.table(table), context)
             if row.name == name]
    return store_fake(runs_dir, row, seed, bindings, **run)


def store_fake(runs_dir: Path, row: TableRow, seed: int = 0, bindings=(), **run) -> Path:
    """A finished fake run of `row` in the run store."""
    config = row_configuration(row, [*bindings, seed_binding(seed)])
    run_dir = fake_run(RunStore(runs_dir).run_dir(config, seed), seed=seed, **run)
    (run_dir / "config.gin").write_text(config)
    return run_dir


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()
