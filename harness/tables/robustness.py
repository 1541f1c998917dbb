"""OoD detection (paper App. K, Tables 11-12) and FGSM robustness (App. L, Table 13) of the
runs Tables 1-2 trained, scored again from their saved members (harness/experiment/rescore.py); the
tables are entries of harness/tables/catalogue.py.

Each row's run gives the cells of its ensemble (M = the run's M) and, for an ensemble, of its
member 0 alone: the paper's "M = 1" rows, which are one member of the M = 3 (or 7) run, not a
run of their own (the paper does not say which member; we take the first).

    Tables 11-12  auroc per OoD set (setting svhn, cifar100 / cifar10, gaussian_noise): the
                  area under the ROC curve of telling the test set (positives) from the OoD
                  set by the maximum softmax probability of the ensemble's mean prediction
                  (or the member's), the score of App. K's references (Augustin et al. 2020,
                  Meinke & Hein 2019); harness/evaluation/metrics.py `auroc`. The sets are
                  harness/data/ood.py's: SVHN's and the other CIFAR's test splits through
                  torchvision's classes (checksummed; downloaded when online), and
                  uncertainty-baselines' Gaussian noise images.
    Table 13      robust_acc_min / _mean / _max (%, setting fgsm_8/255): the accuracy under
                  FGSM at 8/255 crafted on each single member in turn (App. L, after Strauss et
                  al. 2017), min / mean / max over those attacks; a single model, attacked
                  by itself alone, has one number, robust_acc.

The cells only read what the rescoring phase (`rescore_phase`, run by `python -m
harness.tables` between training the rows and writing the table) left in the runs: a cell
whose rescoring is absent is missing, naming the command that rescores it. A set that is not
there (SVHN offline, or a 32x32 colour set beside the smoke scale's 8x8 grey digits) leaves
its cells missing with the reason, naming the file to put where.
"""
from pathlib import Path
from typing import Sequence

from harness.tables.long import MissingCell
from harness.store import paths, readers
from harness.experiment.rescore import NotRescored, read_rescored, run_rescorings, to_rescore

FGSM_EPSILON_255 = 8.0  # App. L
FGSM_SETTING = "fgsm_8/255"  # the reference's setting for Table 13
# The OoD sets of each table, named as in the reference's setting column (App. K).
OOD_SETS = {11: ("svhn", "cifar100", "gaussian_noise"), 12: ("svhn", "cifar10", "gaussian_noise")}
FGSM_TABLE = 13


def rescorings(table: int) -> list[tuple[str, dict]]:
    """The (suite, settings) that table `table`'s cells read from each of its runs: one per
    OoD set, so that a set not on disk leaves the others scored."""
    if table in OOD_SETS:
        return [("ood", {"sets": [name]}) for name in OOD_SETS[table]]
    if table == FGSM_TABLE:
        return [("fgsm", {"epsilon_255": FGSM_EPSILON_255})]
    return []


def rescore_command(table: int) -> str:
    return f"`python -m harness.tables --table={table}` (at the table's --scale)"


def rescore_phase(table: int, run_dirs: Sequence[Path], progress: bool = False) -> None:
    """What table `table` reads from its finished runs but they lack, scored now: first one
    line with the count and a rough duration, then each rescoring as it is done."""
    wanted = rescorings(table)
    if not wanted:
        return
    todo = to_rescore(run_dirs, wanted)
    runs = len({rescoring.run_dir for rescoring in todo})
    known = [rescoring.seconds for rescoring in todo if rescoring.seconds is not None]
    unknown = len(todo) - len(known)
    print(f"rescoring: {runs} run(s), about {sum(known) / 60:.1f} min"
          + (f" ({unknown} of unknown duration)" if unknown else "")
          + f" [{len(todo)} rescoring(s); estimated from each run's {paths.SUMMARY} "
            f"eval_seconds]",
          flush=True)
    run_rescorings(todo, progress)


def views(run_dir: Path) -> dict[int, str]:
    """{M of the cell: the member it scores}: the ensemble, and member 0 alone (M = 1) for an
    ensemble."""
    members = int(readers.summary(run_dir)["num_members"])
    return {members: "ensemble", **({1: "0"} if members > 1 else {})}


def ood_cells(run_dir: Path, table: int) -> dict:
    """{(set, 'auroc', M): AUROC or MissingCell(reason)} for the ensemble and member 0, per OoD
    set of the table."""
    cells = {}
    for name in OOD_SETS[table]:
        try:
            frame = read_rescored(run_dir, "ood", {"sets": [name]}, rescore_command(table))
        except NotRescored as error:
            cells.update({(name, "auroc", m): MissingCell(str(error)) for m in views(run_dir)})
            continue
        for m, member in views(run_dir).items():
            rows = frame[(frame.member == member) & (frame.corruption == name)
                         & (frame.metric == "auroc_maxprob")]
            cells[(name, "auroc", m)] = float(rows.value.iloc[0])
    return cells


def fgsm_cells(run_dir: Path) -> dict:
    """{(FGSM_SETTING, metric, M): robust accuracy in % or MissingCell(reason)}: min / mean / max
    over the attacks crafted on each member, for the ensemble and member 0; robust_acc for a
    single model, attacked by itself alone."""
    statistics = ("min", "mean", "max") if len(views(run_dir)) > 1 else ("",)
    metrics = [f"robust_acc_{name}" if name else "robust_acc" for name in statistics]
    try:
        frame = read_rescored(run_dir, "fgsm", {"epsilon_255": FGSM_EPSILON_255},
                              rescore_command(FGSM_TABLE))
    except NotRescored as error:
        return {(FGSM_SETTING, metric, m): MissingCell(str(error))
                for m in views(run_dir) for metric in metrics}
    cells = {}
    for m, member in views(run_dir).items():
        accuracy = 100 * frame.loc[(frame.member == member) & (frame.metric == "accuracy"),
                                   "value"]
        cells.update({(FGSM_SETTING, metric, m): float(getattr(accuracy, name or "mean")())
                      for name, metric in zip(statistics, metrics)})
    return cells

