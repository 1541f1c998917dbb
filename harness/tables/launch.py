"""Sends the runs that tables (or a sweep) need to a cluster, one job per unfinished run
(submitit):

    python -m harness.launch --table=1,2 --scale=paper --executor=slurm --partition=gpu \\
        [--gpus_per_run=1] [--cpus_per_run=8] [--mem_gb=64] [--time_min=1440] \\
        [--max_parallel=16] [--slurm_setting=account=ABC,qos=high] [--wait]
    python -m harness.launch --table=1 --scale=smoke --executor=local --max_parallel=2
    python -m harness.launch --gin_file=gin/edst.gin [--gin_file=gin/scale/smoke.gin] \\
        [--gin_bindings=...] --sweep='SparsitySpec.sparsity=0.8,0.9' \\
        [--sweep='Trainer.lr=0.1,0.05'] --seeds=0,1,2 [--executor=local|slurm] \\
        [--runs_dir=runs] [--output_dir=reports/sweeps/<name>]
    python -m harness.launch ... --plan     # the runs and their status; nothing runs

The runs are the compute plan's (harness/tables/compute_plan.py: deduplicated by configuration; no
--table: every table and figure of the page), each row with `--gin_bindings` over its files.
With `--sweep`, they are the sweep's instead (harness/tables/binding_sweep.py: the values of
each `--sweep` binding, several flags' cross product, each seed of `--seeds`, over the gin
files and bindings given; every value checked before anything runs). `--seeds`: one number N is
seeds 0..N-1 (`--seeds=3`: 0, 1, 2); a list names the seeds (`--seeds=0,2`), in a sweep only,
as the tables read seeds 0..N-1. A run finished, running (its lock is held),
queued (its job is still waiting) or failed is not submitted; a failed one again only with
--retry_failed. Each job trains its run through `harness.tables.run_rows.run_seed`, under the run's
lock (harness/store/locks.py), so that no run is trained by two jobs at once:

  * one GPU: in the job's own process; several: `torchrun --nproc_per_node=G -m harness.run`
    inside the job (harness/core/distributed.py);
  * preemption or the time limit: submitit's signal makes the job requeue itself (the same
    call again, `checkpoint` below), and the run continues from its last epoch (`--resume`);
  * failure (an error in the run): `seed<k>.failed.json` beside the run in the run store
    (harness/store/runs.py) names the error and
    the job's log, the launcher reports it and does not submit it again.

`--executor=local` runs the jobs as processes of this machine (submitit's LocalExecutor), at
most --max_parallel at a time, this launcher waiting for them; with GPUs each job sees its own
(CUDA_VISIBLE_DEVICES). `--executor=slurm` submits them as one job array (at most
--max_parallel running) and returns, unless --wait. Job logs: `<runs_dir>/launch/<job id>_*`.
While the jobs run here (or --wait waits), one status line counts the runs finished, running,
queued and failed (harness/tables/launch_status.py). Once every job is done (local, or --wait),
the tables are built from the finished runs (`python -m harness.tables`), which name the runs
still missing and why; a sweep's finished runs are compared instead (`python -m
harness.compare`, harness/tables/compare.py) into --output_dir, by default
`reports/sweeps/<first gin file's stem>-<swept bindings>`.

A launcher killed between submitting a job and recording its id neither loses the run nor has
it submitted twice: before it submits, it writes the run's job record as "submitting" with a
token its job's processes carry (harness/store/locks.py `submitting_record`); the next launch
takes that run as queued while a local process carries the token or a SLURM job of the
token's name is in squeue, and submits it again only once none is.
"""
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from harness.core import cli
from harness.tables import catalogue
from harness.tables.binding_sweep import Sweep, seed_list, swept_binding, sweep_runs
from harness.tables.compute_plan import PlannedRun, plan, plan_text
from harness.tables.context import DEFAULT_GIN_DIR, TableContext
from harness.core.errors import UserError, first_line
from harness.experiment.config import module_imports
from harness.store.record import is_finished, write_json
from harness.store import paths, readers
from harness.store.locks import (SUBMISSION, held_for_children, queued_record,
                                  record_failure, submitting_record)
from harness.store.runs import RunStore
from harness.tables.launch_status import LaunchStatus

SLURM_POLL_S = 15  # between looks at the SLURM jobs --wait waits for
DEFAULT_OUTPUT_DIR = Path("reports")


def flags() -> cli.Flags:
    parser = cli.Flags("python -m harness.launch", __doc__)
    parser.integers("table", None, "tables (comma-separated); none: every table and figure")
    parser.string("scale", "paper", "paper, cpu or smoke")
    parser.integers("seeds", [1], "one number N: seeds 0..N-1 of every row or sweep point; "
                    "a list: those seeds (a sweep only; one seed k alone: k,k)")
    parser.repeated("gin_file", "extra gin files layered after the scale; with --sweep, the "
                                "runs' gin files")
    parser.repeated("gin_bindings", "bindings applied after every file")
    parser.modules()
    parser.repeated("sweep", "NAME=V1,V2,...: a run per gin value of the binding NAME (several "
                             "flags: their cross product; a comma inside brackets or quotes "
                             "belongs to its value)")
    parser.boolean("plan", False, "list the runs and their status (the compute plan); run "
                                  "nothing")
    parser.path("gin_dir", str(DEFAULT_GIN_DIR), "where the rows are")
    parser.path("catalogue", None, "a Python file defining CATALOGUE: the paper's tables and "
                "your own (harness/tables/catalogue.py `load`)")
    parser.path("runs_dir", "runs", "the runs (on a file system every node shares)")
    parser.path("output_dir", None, "where the tables are written (default: reports), or a "
                "sweep's comparison (default: reports/sweeps/<gin file>-<swept names>)")
    parser.choice("executor", "slurm", ["slurm", "local"], "where the jobs run")
    parser.string("partition", None, "SLURM partition")
    parser.integer("gpus_per_run", 1, "GPUs per run (several: torchrun inside the job)")
    parser.integer("cpus_per_run", 8, "CPU cores per run (DataLoader workers)")
    parser.integer("mem_gb", 64, "memory per run, GB (SLURM)")
    parser.integer("time_min", 24 * 60, "time limit of one job, minutes; a run longer than "
                   "this continues in its requeued job")
    parser.integer("max_parallel", 16, "jobs running at once")
    parser.integer("max_requeues", 10, "times a job may be requeued at its time limit")
    parser.strings("slurm_setting", [], "more sbatch settings as key=value (account=..., "
                   "qos=..., constraint=...)")
    parser.boolean("wait", False, "SLURM: wait for the jobs, then build the tables")
    parser.boolean("retry_failed", False, "submit failed runs again")
    parser.boolean("progress", False, "progress bars in the job logs")
    return parser


class RunJob:
    """One run, as a submitit job; requeued with the same call on preemption or timeout."""

    def __init__(self, run: PlannedRun, gpus: int, progress: bool):
        self.row, self.seed, self.context = run.row, run.seed, run.context
        self.run_dir = run.run_dir
        self.gpus, self.progress = gpus, progress

    def __call__(self) -> str:
        from harness.tables.run_rows import run_seed

        run_dir = self.run_dir
        train = torchrun(self.gpus) if self.gpus > 1 else None
        terminated = note_termination()
        try:
            outcome = run_seed(self.row, self.seed, self.context, self.progress, train)
        except Exception as error:
            if terminated:  # preempted: SLURM killed torchrun's processes, not the run's fault
                raise SystemExit(f"{run_dir}: terminated by the scheduler") from error
            record_failure(run_dir, first_line(error), job_log())
            raise
        print(f"{run_dir}: {outcome}", flush=True)
        return outcome

    def checkpoint(self):
        """submitit calls it on preemption or at the time limit: requeue the same call, which
        resumes the run (its lock went with this process)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def note_termination() -> list:
    """A list that SIGTERM appends to (then handled as before: submitit ignores it in the
    job's own process). SLURM sends it to every process of a preempted job, so torchrun's
    processes die of it while this one lives on until the grace time ends."""
    received = []
    previous = signal.getsignal(signal.SIGTERM)

    def note(signum, frame):
        received.append(signum)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, note)
    return received


def job_log() -> str | None:
    import submitit

    try:
        return str(submitit.JobEnvironment().paths.stdout)
    except RuntimeError:  # not inside a submitit job
        return None


def torchrun(gpus: int):
    """Training over `gpus` processes of this node (harness/core/distributed.py)."""

    def train(gin_files, bindings, run_dir: Path, progress: bool, overwrite: bool = False
              ) -> None:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={gpus}", "-m", "harness.run",
                   *[f"--gin_file={file}" for file in gin_files],
                   *[f"--gin_bindings={binding}" for binding in bindings],
                   f"--output_dir={run_dir}", "--overwrite" if overwrite else "--resume",
                   "--progress" if progress else "--noprogress"]
        # Its own process group, so that a requeue or Ctrl-C here ends torchrun's workers too
        # rather than leaving them training without the lock, which this process holds for
        # them (their run_experiment takes it again: harness/store/locks.py).
        process = subprocess.Popen(command, start_new_session=True,
                                   env={**os.environ, **held_for_children(run_dir)})
        try:
            code = process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise
        if code != 0:
            raise UserError(f"torchrun over {gpus} GPUs exited with status {code}")

    return train


def executor(args: SimpleNamespace, log_dir: Path):
    import submitit

    if args.executor == "local":
        chosen = submitit.LocalExecutor(folder=log_dir, max_num_timeout=args.max_requeues)
        chosen.update_parameters(timeout_min=args.time_min, tasks_per_node=1)
        return chosen
    chosen = submitit.SlurmExecutor(folder=log_dir, max_num_timeout=args.max_requeues)
    extra = {}
    for setting in args.slurm_setting:
        key, equals, value = setting.partition("=")
        if not equals:
            raise UserError(f"--slurm_setting takes key=value, got {setting!r}")
        extra[key] = value
    chosen.update_parameters(
        partition=args.partition, gpus_per_node=args.gpus_per_run, ntasks_per_node=1,
        cpus_per_task=args.cpus_per_run, mem=f"{args.mem_gb}GB", time=args.time_min,
        array_parallelism=args.max_parallel, signal_delay_s=120,
        additional_parameters=extra)
    return chosen


def to_submit(runs: list[PlannedRun], retry_failed: bool) -> list[PlannedRun]:
    """The runs to submit now, after saying what becomes of the others."""
    chosen = []
    for run in runs:
        if run.status == "failed" and retry_failed:
            paths.failure_record(run.run_dir).unlink(missing_ok=True)
            run.status = "missing"
        if run.status == "missing":
            chosen.append(run)
        elif run.status != "finished":
            print(f"  {run.name} seed {run.seed}: {run.status}"
                  f"{': ' + run.detail if run.detail else ''}", flush=True)
    return chosen


def record_submitting(run: PlannedRun, args: SimpleNamespace, token: str,
                      job_name: str | None = None) -> None:
    run.run_dir.parent.mkdir(parents=True, exist_ok=True)
    write_json(paths.job_record(run.run_dir),
               submitting_record(args.executor, args.runs_dir / "launch", token, job_name))


@contextlib.contextmanager
def submission(token: str):
    """The jobs submitted within it carry `token` in their environment (locks.SUBMISSION),
    inherited from this process's: a local job's controller and task, a SLURM job through
    sbatch's default --export=ALL."""
    os.environ[SUBMISSION] = token
    try:
        yield
    finally:
        del os.environ[SUBMISSION]


def record_job(run: PlannedRun, job, executor_name: str, token: str) -> None:
    run.run_dir.parent.mkdir(parents=True, exist_ok=True)
    write_json(paths.job_record(run.run_dir), {
        "executor": executor_name, "job_id": job.job_id, "submission": token,
        "host": os.uname().nodename, "log": str(job.paths.stdout),
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def outcome_of(run: PlannedRun, job) -> str:
    try:
        return job.result()
    except Exception as error:  # noqa: BLE001  the job's error, reported with its log
        try:
            failed = readers.failure(run.run_dir) or {"error": first_line(error)}
        except readers.DamagedRecord:
            failed = {"error": first_line(error)}
        return f"failed: {failed['error']} (log {job.paths.stdout})"


def launch_local(args: SimpleNamespace, submitter, runs: list[PlannedRun],
                 status: LaunchStatus) -> None:
    """At most --max_parallel jobs at a time, each on GPUs of its own when this machine has
    CUDA (on CPUs alone every job runs on CPUs). Every run has a job record from the start,
    the ones still waiting for a slot one naming this launcher (harness/store/locks.py
    `queued_record`)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    per_run = args.gpus_per_run if count else 0
    if per_run > count:
        raise UserError(f"--gpus_per_run={per_run} but this machine has {count} GPUs")
    free, waiting, active = list(range(count)), list(runs), {}
    for run in runs:  # seen as queued by another launch until submitted below
        run.run_dir.parent.mkdir(parents=True, exist_ok=True)
        write_json(paths.job_record(run.run_dir), queued_record(args.runs_dir / "launch"))
    while waiting or active:
        while waiting and len(active) < args.max_parallel and len(free) >= per_run:
            run, own, free = waiting.pop(0), free[:per_run], free[per_run:]
            submitter.update_parameters(gpus_per_node=per_run, visible_gpus=own)
            # Replaces the queued record before the job can read it (it takes the submitting
            # one for its own, by the token), and outlives this launcher if it is killed
            # before `record_job`.
            token = uuid.uuid4().hex
            record_submitting(run, args, token)
            with submission(token):
                job = submitter.submit(RunJob(run, per_run, args.progress))
            record_job(run, job, args.executor, token)
            status.say(f"submitted {run.name} seed {run.seed}: local job {job.job_id}")
            status.set(run, "running")
            active[job.job_id] = (run, job, own)
        time.sleep(0.2)
        for job_id, (run, job, own) in list(active.items()):
            if job.done():
                status.ended(run, outcome_of(run, job))
                free += own
                del active[job_id]


def launch_slurm(args: SimpleNamespace, submitter, runs: list[PlannedRun],
                 status: LaunchStatus) -> None:
    """One job array; with --wait, follows its jobs until every one has ended."""
    # One token and job name for the array: squeue finds its jobs by that name should this
    # launcher be killed before it records their ids.
    token = uuid.uuid4().hex
    job_name = f"freetickets-{token[:12]}"
    submitter.update_parameters(job_name=job_name)
    for run in runs:
        record_submitting(run, args, token, job_name)
    with submission(token), submitter.batch():
        jobs = [submitter.submit(RunJob(run, args.gpus_per_run, args.progress)) for run in runs]
    for run, job in zip(runs, jobs):
        record_job(run, job, args.executor, token)
        status.say(f"submitted {run.name} seed {run.seed}: SLURM job {job.job_id}")
    pending = list(zip(runs, jobs)) if args.wait else []
    while pending:
        for run, job in list(pending):
            if job.done():
                status.ended(run, outcome_of(run, job))
                pending.remove((run, job))
            elif job.state == "RUNNING":
                status.set(run, "running")
        if pending:
            time.sleep(SLURM_POLL_S)


def build_tables(args: SimpleNamespace, contents: catalogue.Catalogue, seeds: int) -> None:
    for table in contents.tables:
        if args.table is not None and table.number not in args.table:
            continue
        command = [sys.executable, "-m", "harness.tables", f"--table={table.number}",
                   f"--scale={table.scale(args.scale)}", f"--seeds={seeds}",
                   f"--runs_dir={args.runs_dir}", f"--output_dir={args.output_dir}",
                   f"--gin_dir={args.gin_dir}", "--noprogress",
                   *[f"--gin_file={file}" for file in args.gin_file],
                   *[f"--gin_bindings={binding}" for binding in args.gin_bindings],
                   *([f"--catalogue={args.catalogue}"] if args.catalogue else [])]
        done = subprocess.run(command, capture_output=True, text=True)
        print(f"table {table.number}: "
              f"{f'written to {args.output_dir}' if done.returncode == 0 else 'incomplete'}"
              f"{'' if done.returncode == 0 else ': ' + (done.stderr or done.stdout).strip()}",
              flush=True)


def compare_sweep(runs: list[PlannedRun], output_dir: Path) -> int:
    """`python -m harness.compare` of the sweep's finished runs into `output_dir`, with its
    plots where matplotlib (the `figures` extra) is installed: without it, the table alone."""
    from harness.tables import compare

    finished = [str(place) for run in runs
                if is_finished(place := run.context.store.find(run.config, run.seed))]
    if not finished:
        print("sweep: no run finished, nothing to compare", flush=True)
        return 0
    plots = importlib.util.find_spec("matplotlib") is not None
    if not plots:
        print("sweep: the comparison without its plots: they need matplotlib (pip install "
              "'freetickets-bench[figures]')", flush=True)
    return compare.main([*finished, f"--output_dir={output_dir}", *(["--plot"] if plots else [])])


def table_plan(args: SimpleNamespace, seeds: list[int]
               ) -> tuple[list[PlannedRun], catalogue.Catalogue]:
    if seeds != list(range(len(seeds))):
        raise UserError(f"--seeds={','.join(map(str, seeds))} names seeds, which only a --sweep "
                        f"takes: the tables read seeds 0..N-1 of each row; give their number")
    contents = catalogue.load(args.catalogue, args.gin_dir)
    context = TableContext(args.scale, RunStore(args.runs_dir), args.gin_dir, args.gin_file,
                           args.gin_bindings, seeds=len(seeds))
    return plan(args.table, context, contents), contents


def sweep_of(args: SimpleNamespace, seeds: list[int]) -> Sweep:
    for flag, given in (("--table", args.table is not None),
                        ("--catalogue", args.catalogue is not None),
                        ("--scale", args.scale != "paper")):
        if given:
            raise UserError(f"{flag} is for tables; a --sweep runs its --gin_file files (a "
                            f"scale too: --gin_file=gin/scale/smoke.gin)")
    if not args.gin_file:
        raise UserError("--sweep needs the runs' gin files: --gin_file=gin/dense.gin (and, "
                        "e.g., --gin_file=gin/scale/smoke.gin)")
    return Sweep(tuple(args.gin_file), tuple(args.gin_bindings),
                 tuple(swept_binding(flag) for flag in args.sweep), tuple(seeds))


def launch(args: SimpleNamespace) -> int:
    for name, value in (("--gpus_per_run", args.gpus_per_run),
                        ("--max_parallel", args.max_parallel)):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    # --module as gin import bindings: every job, torchrun and table build imports it again
    args.gin_bindings = [*module_imports(args.module), *args.gin_bindings]
    seeds = seed_list(args.seeds)
    if args.sweep:
        sweep = sweep_of(args, seeds)
        runs, label = sweep_runs(sweep, RunStore(args.runs_dir)), "sweep"
        scale = " + ".join(sweep.gin_files)
        args.output_dir = args.output_dir or DEFAULT_OUTPUT_DIR / "sweeps" / sweep.name
    else:
        (runs, contents), label, scale = table_plan(args, seeds), "tables", args.scale
        args.output_dir = args.output_dir or DEFAULT_OUTPUT_DIR
    if args.plan:
        print(plan_text(runs, args.gpus_per_run, None, scale))
        return 0
    if args.executor == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise UserError("--executor=slurm needs sbatch and srun on this machine; use "
                        "--executor=local to run the jobs here")
    finished = sum(run.status == "finished" for run in runs)
    print(f"{len(runs)} distinct runs, {finished} finished", flush=True)
    chosen = to_submit(runs, args.retry_failed)
    if not chosen:
        print("nothing to submit", flush=True)
    submitter = executor(args, args.runs_dir / "launch")
    status = LaunchStatus(label, runs)
    try:
        if args.executor == "local":
            launch_local(args, submitter, chosen, status)
        elif chosen:
            launch_slurm(args, submitter, chosen, status)
    finally:
        status.close()
    if args.executor == "slurm" and chosen and not args.wait:
        print("the comparison: run this command again once the jobs are done (it submits "
              "nothing then)" if args.sweep else "the tables: run this again with --wait, or "
              "`python -m harness.tables` once the jobs are done", flush=True)
        return 0
    if args.sweep:
        return compare_sweep(runs, args.output_dir)
    build_tables(args, contents, len(seeds))
    return 0


@cli.command
def main(argv: list[str] | None = None) -> int:
    return launch(flags().parse(argv))
