"""An assembled experiment (harness/experiment/assemble.py `Prepared`) executed and recorded: trained
by its method, scored on its suites, and written as a run directory (harness/store/record.py) with
its metrics, predictions, FLOPs, timings and provenance.

    run_experiment(gin_files, bindings, output_dir)  parse, check, lock, then execute
    plan_experiment(...)                             everything before the first write
    execute(prepared, run_dir)                       train, evaluate, record
"""
import contextlib
import hashlib
import itertools
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import gin
import pandas as pd
from tqdm.auto import tqdm

from harness.core import distributed

from harness.engine import scale
from harness.evaluation.cached_predictions import PredictionCollector
from harness.experiment.config import parse
from harness.core.durable import DiskFull
from harness.core.errors import Interrupted, UserError, first_line
from harness.evaluation.evaluate import evaluate
from harness.experiment.assemble import PRECISIONS, Experiment, Prepared, default_dtype
from harness.flops import layer_forward_flops, sparse_forward_flops, weight_densities
from harness.evaluation.history import RunHistory
from harness.evaluation.predictors import Predictor
from harness.core.progress import draws_bars
from harness.core.provenance import code_state
from harness.store import paths
from harness.store.locks import training_lock
from harness.store.record import (command_line, make_run_dir, plan_run_dir,
                                  record_command, record_resume, staging_dir, swap_in,
                                  write_json, write_metrics, write_text)
from harness.evaluation.suite_summary import corrupted_summary
from harness.evaluation.member_structure import structure_rows
from harness.evaluation.inference_timing import SUITE as TIMING_SUITE, inference_timing
from methods import FitContext
from methods.base import Accounting


class Preempted(Interrupted):
    """SIGTERM during a run (`preemptible`); the message says how to continue it. A command
    exits with 128 + SIGTERM (harness/core/cli.py), as a shell reports a process SIGTERM
    ended; a requeueing job script tests for it."""

    exit_status = 128 + signal.SIGTERM


@contextlib.contextmanager
def preemptible():
    """Within it SIGTERM raises `Preempted` where the process is, as Ctrl-C raises
    KeyboardInterrupt: the run keeps its last durable checkpoint (every epoch, and every
    `Trainer.checkpoint_every` steps), from which `--resume` continues to the numbers of an
    uninterrupted run. The SIGTERMs that follow the first are ignored while the run unwinds.
    For a command's own process only: a launcher's job (harness/tables/launch.py), whose
    SIGTERM submitit handles, trains without it."""
    owner = os.getpid()

    def preempt(signum, frame):
        if os.getpid() != owner:
            # A forked child (a DataLoader worker) inherits the handler; it ends as it would
            # have, and its parent says what became of the run.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Preempted("preempted (SIGTERM) before training began; nothing was trained")

    previous = signal.signal(signal.SIGTERM, preempt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(prepared: Prepared, run_dir: Path) -> dict | None:
    """Trains, evaluates and writes the run record; returns the summary. Under torchrun every
    process trains; rank 0 alone evaluates and writes, and the others return None."""
    if distributed.is_main():
        write_text(paths.config(run_dir), gin.config_str())
    history = RunHistory(run_dir, validation=prepared.data.validation,
                         eval_batch_size=prepared.experiment.eval_batch_size,
                         log=not draws_bars(prepared.progress),
                         tensorboard=prepared.experiment.tensorboard)
    context = FitContext(trainer=prepared.trainer, train_set=prepared.data.splits.train,
                         model_factory=prepared.model_factory, seed=prepared.experiment.seed,
                         checkpoint_dir=paths.checkpoints(run_dir), history=history)
    with default_dtype(PRECISIONS[prepared.experiment.precision]):
        predictor = prepared.method.fit(context)
        if not distributed.is_main():
            return None
        start = time.perf_counter()
        rows = []
        test_predictions = PredictionCollector()
        for suite, eval_sets in itertools.groupby(prepared.eval_sets, lambda s: s.suite):
            eval_sets = list(eval_sets)  # one bar per suite, not per corrupted set
            for eval_set in tqdm(eval_sets, desc=f"eval {suite}", unit="set", leave=False,
                                 disable=not draws_bars(prepared.progress)):
                clean_test = (eval_set.suite, eval_set.corruption) == ("test", "clean")
                scored = (evaluate(predictor, eval_set, progress=False,
                                   collect=test_predictions) if clean_test else
                          eval_set.score(predictor, False))
                for row in scored:  # a scored set's rows may name their own corruption
                    rows.append({"method": prepared.method.name, "suite": eval_set.suite,
                                 "corruption": eval_set.corruption,
                                 "severity": eval_set.severity, **row})
            if not draws_bars(prepared.progress):
                print(f"eval {suite}: {len(eval_sets)} set(s) scored", file=sys.stderr,
                      flush=True)
        eval_seconds = time.perf_counter() - start
        timing_rows, timing = inference_timing(
            predictor, prepared.data.splits.test.image_shape, prepared.data.device,
            prepared.method.sparsity > 0)
    rows += [{"method": prepared.method.name, "suite": TIMING_SUITE, "corruption": "clean",
              "severity": 0, **row} for row in timing_rows]
    if test_predictions.labels:  # for sub-ensembles without retraining (Fig. 5)
        test_predictions.write(paths.test_predictions(run_dir))

    rows += [{"method": prepared.method.name, "suite": "structure", "corruption": "clean",
              "severity": 0, **row} for row in structure_rows(predictor.members())]
    flops = measured_flops(prepared, predictor, context)
    rows += [{"method": prepared.method.name, "member": "ensemble", "suite": "flops",
              "corruption": "clean", "severity": 0, "metric": name, "value": flops[name]}
             for name in ("train_flops", "train_flops_ratio", "test_flops",
                          "test_flops_ratio", "planned_train_flops",
                          "planned_train_flops_ratio")]
    operative = gin.operative_config_str()
    write_text(paths.operative_config(run_dir), operative)
    write_json(paths.flops(run_dir), flops)
    write_metrics(paths.metrics(run_dir), rows)
    summary = {**run_summary(prepared, rows, context, eval_seconds, operative),
               "inference_timing": timing}
    write_json(paths.summary(run_dir), summary)
    return summary


def measured_flops(prepared: Prepared, predictor: Predictor, context: FitContext) -> dict:
    """The run's own figures: training FLOPs from the ledgers of its training runs, test
    FLOPs from one prediction of the predictor on one example (every member's forward,
    every tiled row, every MC pass), scaled by the nonzero weights of its layers; planned
    ones beside. `forward_flops` is that test figure spread evenly over the M members."""
    planned = prepared.planned_flops
    image_shape = prepared.data.splits.train.image_shape
    test_flops = sparse_forward_flops(layer_forward_flops(predictor, image_shape),
                                      weight_densities(predictor))
    members = predictor.num_members
    train_flops = context.accounting.train_flops
    dense = planned["dense_forward_flops"]
    return {**planned, "forward_flops": [test_flops / members] * members,
            "forward_ratio": test_flops / members / dense,
            "train_flops": train_flops,
            "train_flops_ratio": train_flops / planned["reference_train_flops"],
            "test_flops": test_flops, "test_flops_ratio": test_flops / dense,
            "planned_train_flops": planned["train_flops"],
            "planned_train_flops_ratio": planned["train_flops_ratio"],
            "planned_test_flops_ratio": planned["test_flops_ratio"]}


def run_summary(prepared: Prepared, rows: list[dict], context: FitContext,
                eval_seconds: float, operative: str) -> dict:
    """summary.json: the headline numbers, timings and provenance of the finished run."""
    headline = {f"{row['suite']}/{row['metric']}": row["value"] for row in rows
                if row["member"] == "ensemble" and row["corruption"] == "clean"}
    accounting = context.accounting
    return {
        "method": prepared.method.name,
        "display_name": prepared.method.display_name or prepared.method.name,
        "dataset": prepared.data.splits.name,
        "model": prepared.planned_flops["model"],
        "num_members": prepared.method.num_members,
        "sparsity": prepared.method.sparsity,
        "training_runs": prepared.method.training_runs,
        "seed": prepared.experiment.seed,
        "epoch_factor": scale.epoch_factor(),
        "device": str(prepared.data.device),
        "train_examples": len(prepared.data.splits.train),
        "metrics": headline,
        # cacc/cnll/cece (+ the extra corruptions), aacc/anll/aece where the run scored
        # those sets: what the tables and `python -m harness.compare` print
        "corrupted": corrupted_summary(pd.DataFrame(rows)),
        "train_seconds": round(accounting.train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "train_images_per_second": (
            round(accounting.examples_seen / accounting.train_seconds, 1)
            if accounting.train_seconds > 0 else None),
        **code_state(),  # git_commit, git_dirty, git_diff_hash (harness/core/provenance.py)
        "config_hash": hashlib.sha256(operative.encode()).hexdigest()[:16],
        **sparse_kernels(accounting),
    }


def sparse_kernels(accounting: Accounting) -> dict:
    """summary.json's `sparse_kernels` where a stage trained with SparsitySpec.kernels 'sparse'
    or 'auto': per stage, each masked conv's kernels ('sparse' or 'dense'), auto's median
    seconds of both, and the format rebuilds after mask updates (methods/sparse/kernels.py)."""
    stages = {stage: record["sparse_kernels"] for stage, record in accounting.records.items()
              if "sparse_kernels" in record}
    return {"sparse_kernels": stages} if stages else {}


def plan_experiment(gin_files, bindings=(), output_dir: str | None = None, *,
                    overwrite: bool = False, resume: bool = False, progress: bool = True
                    ) -> tuple[Path, str, Prepared]:
    """Everything `run_experiment` does before it writes: the configuration parsed and
    checked, the run directory and what will become of it ("create", "resume", "replace",
    harness/store/record.py), the experiment prepared. Raises UserError, having written nothing."""
    if overwrite and resume:
        raise UserError("--overwrite and --resume exclude each other")
    if resume and not output_dir:
        raise UserError("--resume needs --output_dir, the run directory to continue")
    parse(gin_files, bindings)
    try:
        experiment = Experiment()
        run_dir = Path(output_dir or f"runs/{experiment.method_name}-"
                                     f"{time.strftime('%Y%m%d-%H%M%S')}")
        # Under torchrun rank 0 alone decides and makes the run directory.
        mode = distributed.from_main(lambda: plan_run_dir(
            run_dir, overwrite=overwrite, resume=resume, config=gin.config_str()))
        prepared = experiment.prepare(progress=progress and distributed.is_main())
    except UserError:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        raise UserError(first_line(error)) from error
    return run_dir, mode, prepared


def run_experiment(gin_files, bindings=(), output_dir: str | None = None, *,
                   overwrite: bool = False, resume: bool = False,
                   progress: bool = True) -> tuple[Path, dict]:
    """Parses the configuration, checks it, then trains and evaluates into the run directory.

    A mistake found before training leaves no directory behind; one found during training
    (a diverging loss) removes the directory it created. `resume` continues an unfinished run
    only if its recorded configuration equals this one (a missing or empty directory starts a
    fresh run); `overwrite` replaces only a run directory (harness/store/record.py), and only once
    the new run has finished: it is built beside it in a staging directory. Ctrl-C raises
    `Interrupted`, SIGTERM under `preemptible` `Preempted`, whose message says what became of
    the run; a full disk (`DiskFull`) keeps the run's checkpoints and says to free space and
    continue it. The whole run holds the run directory's training lock
    (`hold_training_lock`)."""
    run_dir, mode, prepared = plan_experiment(gin_files, bindings, output_dir,
                                              overwrite=overwrite, resume=resume,
                                              progress=progress)
    with contextlib.ExitStack() as held:
        distributed.from_main(lambda: hold_training_lock(held, run_dir))
        # Decided again under the lock: another trainer may have started or finished it since.
        mode = distributed.from_main(lambda: plan_run_dir(
            run_dir, overwrite=overwrite, resume=resume, config=gin.config_str()))
        return execute_in(prepared, run_dir, mode, gin_files, bindings)


def hold_training_lock(held: contextlib.ExitStack, run_dir: Path) -> None:
    """One trainer per run directory, whichever command started it (harness.run, the tables,
    a launcher's job, the page): a second is refused naming the first (harness/store/locks.py
    `Busy`, exit status 2), and the run is left to the first."""
    try:
        held.enter_context(training_lock(run_dir, join=True))
    except OSError as error:  # the lock lies beside the run directory: same folder
        raise UserError(f"cannot write to output_dir {run_dir} ({error.strerror}); choose a "
                        f"writable --output_dir") from error


def execute_in(prepared: Prepared, run_dir: Path, mode: str, gin_files, bindings
               ) -> tuple[Path, dict]:
    """`run_experiment` once its run directory is locked and its mode decided."""
    target = staging_dir(run_dir) if mode == "replace" else run_dir
    created = distributed.from_main(lambda: make_run_dir(target))
    if distributed.is_main():
        if mode == "resume":
            record_resume(target)
        else:
            record_command(target, gin_files, bindings)
    resume = "continue this run with: " + command_line(
        [sys.argv[0], "--resume", f"--output_dir={run_dir}"])
    try:
        summary = execute(prepared, target)
    except KeyboardInterrupt as interrupt:
        cut_short = Preempted if isinstance(interrupt, Preempted) else Interrupted
        what = "preempted (SIGTERM)" if cut_short is Preempted else "interrupted"
        if mode == "replace":
            shutil.rmtree(target, ignore_errors=True)
            raise cut_short(f"{what}: the new run was discarded; {run_dir} still holds the "
                            f"previous one") from None
        raise cut_short(f"{what}: {resume}") from None
    except DiskFull as full:
        # The checkpoints written so far are the run's progress: kept, unless the run was a
        # replacement, whose staging folder only takes room the previous run does not need.
        if mode == "replace":
            shutil.rmtree(target, ignore_errors=True)
            raise DiskFull(full.path, full.reason, f"run again; {run_dir} still holds the "
                                                   f"previous run") from full
        raise DiskFull(full.path, full.reason, resume) from full
    except (UserError, FloatingPointError) as error:
        if created and distributed.is_main():
            shutil.rmtree(target, ignore_errors=True)
        if isinstance(error, FloatingPointError):
            kept = {"replace": f"; {run_dir} still holds the previous run",
                    "resume": f"; {run_dir} keeps its checkpoints for inspection"}.get(mode, "")
            raise UserError(f"training diverged: {error}{kept}") from error
        raise
    if mode == "replace" and distributed.is_main():
        swap_in(target, run_dir)
    return run_dir, summary
