"""The compute plan: every distinct run that tables (and the page's figures) need, before
anything runs:

    python -m harness.tables --plan [--table=1,2] [--scale=paper] [--seeds=1]
        [--gpus_per_run=1] [--throughput=build/gpu_check/gpu_check.json]
    make paper SCALE=paper PLAN=1        # the whole page: every table and figure

One line per distinct run. Rows are deduplicated by configuration as the run store files
them (harness/store/runs.py): a row whose configuration (gin bindings, seed included) another
row already has is that run (`rows` counts them; they are listed below the table). Per run:

    status      finished | running (a live lock: harness/store/locks.py; its holder named) |
                queued (a launcher's job that has not started) | failed (its log named) |
                missing (interrupted runs resume) | not built (its method is not registered)
    paper       planned training FLOPs as the paper counts them (App. D: a sparse layer costs
                its density; harness/flops)
    executed    the same training with masked weights multiplied densely, as dense GPU
                kernels do (`harness.flops.as_executed`): what the GPU-hours are paid in
    GPU-h       executed / the throughput for the run's architecture, in GPU-hours; a run on
                G GPUs (`--gpus_per_run`) takes GPU-h / G hours of wall clock at ideal scaling

The throughput is the GPU check's (`make gpu-check`, harness/bench/gpu_check.py: the best measured
training FLOP/s of dense WRN-28-10 and ResNet-50 steps) when its JSON is there, else
`ASSUMED_FLOPS_PER_S`, and the plan says which.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import gin

from harness.experiment.config import parse
from harness.core.errors import UserError, first_line
from harness.tables.catalogue import PAPER, Catalogue
from harness.tables.context import TableContext
from harness.tables.rows import TableRow, figure_rows, table_rows
from harness.store.record import is_finished
from harness.store import paths, readers
from harness.store.locks import (describe, describe_job, job_alive, own_job,
                                  running)
from harness.store.configuration import configuration_id, seed_binding

if TYPE_CHECKING:  # pandas loads where the plan is framed, not for --help
    import pandas as pd

# The assumption when no GPU check is recorded: 40 % of an H100 SXM's dense bf16 peak
# (989 TFLOP/s), a common sustained figure for convolutional training under bf16 autocast.
H100_BF16_PEAK = 989e12
ASSUMED_FRACTION = 0.4
ASSUMED_FLOPS_PER_S = ASSUMED_FRACTION * H100_BF16_PEAK
GPU_CHECK_JSON = Path("build/gpu_check/gpu_check.json")


@dataclass
class PlannedRun:
    source: str  # table<N> or figure<N>
    row: TableRow
    context: TableContext  # at the scale of its table (or figure)
    seed: int
    config: str = ""
    method: str = ""
    dataset: str = ""
    model: str = ""
    paper_flops: float = float("nan")
    executed_flops: float = float("nan")
    same_as: list[str] = field(default_factory=list)  # other rows that are this run
    status: str = "missing"
    detail: str = ""

    @property
    def name(self) -> str:
        return f"{self.source}/{self.row.name}"

    @property
    def run_dir(self) -> Path:
        """Its folder in the run store (known once `configure` gave its configuration)."""
        return self.context.store.run_dir(self.config, self.seed)


def plan_sources(tables: list[int] | None, context: TableContext,
                 contents: Catalogue = PAPER) -> list[tuple[str, TableContext, list]]:
    """(source, its context, rows) of the tables asked for (all of the page's when None) and,
    for the whole page, its figures' own runs; at each table's own scale (Table 3's at smoke)
    of the page's scale, the context's."""
    chosen = [table for table in contents.tables if tables is None or table.number in tables]
    unknown = sorted(set(tables or ()) - {table.number for table in contents.tables})
    if unknown:
        raise UserError(f"--table names no table of the catalogue: {unknown}; tables: "
                        f"{', '.join(str(table.number) for table in contents.tables)}")
    sources = [(table.folder, context.for_table(table),
                table_rows(table, context.for_table(table))) for table in chosen]
    if tables is None:
        folders: dict[str, object] = {}
        for figure in contents.figures:
            folders.setdefault(figure.folder, figure)
        sources += [(folder, context.without_extras(), figure_rows(figure, context))
                    for folder, figure in folders.items()]
    return [source for source in sources if source[2]]


def configure(run: PlannedRun) -> None:
    """The run's configuration and planned FLOPs (both conventions); a configuration that
    cannot be planned is named in `detail`."""
    from harness.experiment.assemble import Experiment
    from harness.flops import as_executed
    from methods import METHODS

    parse(run.row.gin_files, [*run.context.bindings, seed_binding(run.seed)])
    run.config = gin.config_str()
    run.method = gin.query_parameter("Experiment.method")
    run.dataset = gin.query_parameter("Experiment.dataset")
    run.model = gin.query_parameter("Experiment.model")
    if run.method not in METHODS.names():
        run.status, run.detail = "not built", f"method {run.method!r} is not registered"
        return
    try:
        run.paper_flops = Experiment().plan_flops()["train_flops"]
        with as_executed():
            run.executed_flops = Experiment().plan_flops()["train_flops"]
    except (UserError, ValueError, KeyError, RuntimeError) as error:
        run.status, run.detail = "error", first_line(error)


def distinct_runs(sources) -> list[PlannedRun]:
    """Every (row, seed) of the sources (its context's seeds), one PlannedRun per distinct
    configuration."""
    return distinct([PlannedRun(source, row, context, seed) for source, context, rows in sources
                     for row in rows for seed in range(context.seeds)])


def distinct(candidates: list[PlannedRun]) -> list[PlannedRun]:
    """The candidates configured (`configure`), one per distinct configuration and seed: a
    later one of the same is the first's `same_as`."""
    runs: dict[tuple, PlannedRun] = {}
    for run in candidates:
        try:
            configure(run)
        except UserError as error:
            run.status, run.detail = "error", first_line(error)
        key = (configuration_id(run.config), run.seed) if run.config else (run.name, run.seed)
        if key in runs:
            runs[key].same_as.append(run.name)
        else:
            runs[key] = run
    return list(runs.values())


def find_status(run: PlannedRun) -> None:
    """finished, running, failed, queued, missing or damaged (a record that cannot be read,
    harness/store/readers.py), from its folder in the run store."""
    if run.status in ("not built", "error"):
        return
    place = run.context.store.find(run.config, run.seed)  # a plan writes nothing
    if is_finished(place):
        damage = readers.run_damage(place)
        run.status, run.detail = ("damaged", damage) if damage else ("finished", str(place))
        return
    holder = running(place)
    if holder is not None:
        run.status, run.detail = "running", f"{place}: {describe(holder)}"
        return
    try:
        failed, job = readers.failure(place), readers.job(place)
    except readers.DamagedRecord as damaged:
        run.status, run.detail = "damaged", str(damaged)
        return
    if failed is not None:
        run.status, run.detail = "failed", f"{failed['error']} (log {failed.get('log')})"
        return
    if job is not None and not own_job(job):
        if job_alive(job):
            run.status, run.detail = "queued", describe_job(job)
            return
        run.detail = f"ended unfinished: {describe_job(job)}"
    if paths.config(place).is_file():
        run.detail = f"interrupted, resumes from {place}"


def throughput(path: Path | None = None) -> tuple[dict[str, float], str]:
    """Training FLOP/s per model family ('wide_resnet', 'resnet'), and where they come
    from: the GPU check's JSON `path` (None: `GPU_CHECK_JSON`, where `make gpu-check` leaves
    it), or the named assumption where there is none. A `path` given that is not there is a
    mistake, not a reason to assume."""
    if path is not None and not path.is_file():
        raise UserError(f"--throughput {path} does not exist: run `make gpu-check` to write "
                        f"it, or leave the flag out to use {GPU_CHECK_JSON} or an assumed rate")
    path = path or GPU_CHECK_JSON
    if path.is_file():
        check = readers.gpu_check(path)
        rates = check["plan_flops_per_s"]
        if check.get("reduced"):  # a CPU run at reduced sizes says nothing of a GPU
            rates = {}
        if rates:
            return rates, (f"measured by the GPU check on {check.get('device', '?')} "
                           f"({path}): " + ", ".join(f"{name} {rate / 1e12:.1f} TFLOP/s"
                                                     for name, rate in rates.items()))
    return {}, (f"assumed: {ASSUMED_FRACTION:.0%} of an H100 SXM's {H100_BF16_PEAK / 1e12:.0f} "
                f"TFLOP/s dense bf16 peak = {ASSUMED_FLOPS_PER_S / 1e12:.0f} TFLOP/s (no GPU "
                f"check at full size recorded at {path}: run `make gpu-check` on the "
                f"cluster's GPU)")


def plan(tables: list[int] | None, context: TableContext, contents: Catalogue = PAPER
           ) -> list[PlannedRun]:
    """The distinct runs of the tables (the whole page when None) at the context's scale and
    seeds, with their status: the rows' gin files and the context's bindings, as the tables
    and the launcher run them (the figures' own rows without them, as the page runs them)."""
    runs = distinct_runs(plan_sources(tables, context, contents))
    for run in runs:
        find_status(run)
    return runs


def plan_frame(runs: list[PlannedRun], rates: dict[str, float], gpus_per_run: int
               ) -> "pd.DataFrame":
    import pandas as pd

    frame = pd.DataFrame([{
        "run": run.name, "seed": run.seed, "rows": 1 + len(run.same_as),
        "method": run.method, "dataset": run.dataset, "model": run.model,
        "status": run.status, "paper": run.paper_flops, "executed": run.executed_flops,
        "GPUs": gpus_per_run, "detail": run.detail} for run in runs])
    rate = frame.model.map(lambda model: rates.get(model, ASSUMED_FLOPS_PER_S))
    frame["GPU-h"] = frame.executed / rate / 3600
    frame["hours"] = frame["GPU-h"] / gpus_per_run
    return frame


def plan_text(runs: list[PlannedRun], gpus_per_run: int, throughput_json: Path | None,
              scale: str) -> str:
    rates, source = throughput(throughput_json)
    frame = plan_frame(runs, rates, gpus_per_run)
    shown = frame.drop(columns=["model", "detail"]).copy()
    for column in ("paper", "executed"):
        shown[column] = shown[column].map(lambda value: f"{value:.2e}")
    for column in ("GPU-h", "hours"):
        shown[column] = shown[column].map(lambda value: f"{value:.2f}")
    lines = [f"Compute plan, scale {scale}: {len(frame)} distinct runs "
             f"({sum(len(run.same_as) for run in runs)} more rows reuse them)",
             shown.to_string(index=False), "",
             "Totals by dataset (FLOPs; GPU-hours at the throughput below):"]
    by_dataset = frame.groupby("dataset")[["paper", "executed", "GPU-h"]].sum()
    by_dataset.loc["all"] = by_dataset.sum()
    lines.append(by_dataset.to_string(formatters={"paper": "{:.2e}".format,
                                                  "executed": "{:.2e}".format,
                                                  "GPU-h": "{:.1f}".format}))
    lines += ["", "By status (runs; GPU-hours):"]
    by_status = frame.groupby("status").agg(runs=("run", "size"), gpu_h=("GPU-h", "sum"))
    lines.append(by_status.to_string(formatters={"gpu_h": "{:.1f}".format}))
    remaining = frame[frame.status.isin(["missing", "queued", "running", "failed", "damaged"])]
    lines += ["", f"Still to run: {len(remaining)} runs, {remaining['GPU-h'].sum():.1f} "
                  f"GPU-hours; at {gpus_per_run} GPU(s) per run "
                  f"{remaining['hours'].sum():.1f} hours one after another",
              f"Throughput: {source}"]
    reused = [run for run in runs if run.same_as]
    if reused:
        lines += ["", "Rows that are another row's run (the same configuration):"]
        lines += [f"  {run.name} seed {run.seed}: {', '.join(run.same_as)}" for run in reused]
    details = frame[frame.detail.astype(bool) & (frame.status != "finished")]
    if len(details):
        lines += ["", "Details:"] + [f"  {row.run} seed {row.seed} [{row.status}]: {row.detail}"
                                     for row in details.itertuples()]
    return "\n".join(lines)
