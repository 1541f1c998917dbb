"""Notes printed under the wide tables beside the rows they concern: the FLOPs conventions of
the rows the paper quotes from Havasi et al. 2021, and of the pruning ensembles, and the
protocol (training split, checkpoint selection) each row ran under."""
from pathlib import Path


# Per-row notes on the FLOPs of the rows the paper quotes from Havasi et al. 2021 (marked *
# in its Tables 1-3); `havasi_notes` gives the convention they share.
HAVASI_NOTES = {
    "Monte Carlo Dropout": "trained for uncertainty-baselines' 200 epochs, so 0.80x of the "
                           "250-epoch reference (the paper prints 1.00x); test FLOPs are K x "
                           "dense for K passes (the row has K = 1).",
    "BatchEnsemble": "the batch is tiled M = 4 times, so training costs about M x a dense run "
                     "(4.0x on CIFAR, 3.6x on ImageNet at uncertainty-baselines' 135 epochs) "
                     "and a prediction M dense forwards; the paper's 1.10x follows App. D's "
                     "free-large-batch assumption or Havasi et al.'s prediction time.",
    "MIMO": "each step repeats the batch R times (R = 4 on CIFAR, 2 on ImageNet), so training "
            "costs about R x a dense run (4.0x; 2.06x on ImageNet); a prediction is one "
            "forward (1.00x plus the wider first conv and head). The paper prints 1.00x: App. "
            "D counts neither the repetitions nor the extra inputs and outputs.",
    "TreeNet": "trunk once plus M branches per row: 1.54x for WRN-28-10 (M = 3, split 10) and "
               "1.31x for ResNet-50 (M = 2, split 12) in training and at test, beside the "
               "paper's 1.52x / 1.33x; the split is chosen in gin/treenet.gin.",
}


def havasi_notes(methods) -> list[str]:
    """The FLOPs notes of the rows the paper quotes from Havasi et al. 2021 among `methods`."""
    present = [name for name in HAVASI_NOTES if name in set(methods)]
    if not present:
        return []
    return ["", "Rows the paper quotes from Havasi et al. 2021: our FLOPs count every row the "
            "network processes (forward + 2x backward per row), the paper's App. D omits "
            "MIMO's extra inputs and outputs and supposes BatchEnsemble's larger batch is "
            "free; its 'runs' of these rows (BatchEnsemble 4, TreeNet 1.5) are forward passes "
            "per prediction and its 1.10x / 1.52x may be Havasi et al.'s prediction time (not "
            "checked against Havasi et al.'s table). Each of ours is one training run.", "",
            *(f"- {name}: {HAVASI_NOTES[name]}" for name in present)]


# Notes on the FLOPs of the pruning ensembles (paper §4 footnote 2, App. C), whose planned
# ratios at paper scale differ from the paper's on purpose.
PRUNING_NOTES = {
    "LTR Ensemble": "planned 0.98x beside the paper's 1.75x (= 1 + 3 x 0.25): our one "
                    "pruned run is counted step by step as its density falls (dense for 10% "
                    "of the run, gradual magnitude pruning to S = 0.8 by 60%: 0.38x of a dense "
                    "run, the paper counts it as 1), and the shared layer-wise S = 0.8 mask "
                    "costs 0.2 f_D in each of the 3 retrainings (0.60x; the paper's 0.25 "
                    "each).",
    "PF Ensemble": "planned 3.60x beside the paper's 3.75x (= 3 + 3 x 0.25): 3 dense runs "
                   "plus 3 fine-tunings of 250 epochs; the plan takes every layer at density "
                   "0.2, the ledger measures the per-layer densities global magnitude "
                   "pruning really gives (recorded per member in the run's structure "
                   "metrics), so the measured ratio differs from the planned one (smoke "
                   "scale, WRN-10-2: f_S/f_D = 0.32, 3.96x measured).",
}


def pruning_notes(methods) -> list[str]:
    """The FLOPs notes of the pruning-ensemble rows among `methods`."""
    present = [name for name in PRUNING_NOTES if name in set(methods)]
    return ["", "Pruning ensembles:", "",
            *(f"- {name}: {PRUNING_NOTES[name]}" for name in present)] if present else []


# The protocol behind each printed number (gin/protocol/, README "Conventions that decide
# numbers"): each row runs under the protocol of its printed number unless the uniform switch
# (gin/protocol/uniform.gin, layered last) runs every row under one.
AUTHORS_PROTOCOL = ("the authors' protocol (gin/protocol/authors.gin): trained on 90% of the "
                    "training set, each stage's (EDST: each refinement phase's) weights of best "
                    "validation accuracy")
QUOTED_PROTOCOL = ("full training set, last checkpoint (gin/protocol/full_train_last.gin), "
                   "as uncertainty-baselines and the methods' own code")
PROTOCOLS = {
    **dict.fromkeys(("Single Dense Model", "Dense Ensemble", "Monte Carlo Dropout",
                     "BatchEnsemble", "MIMO", "TreeNet", "Snapshot", "FGE"), QUOTED_PROTOCOL),
    **dict.fromkeys(("Static Sparse Ensemble", "DST Ensemble", "EDST Ensemble", "LTR Ensemble",
                     "PF Ensemble"), AUTHORS_PROTOCOL)}
TEST_SELECTED = ("The printed LTR and PF Ensemble numbers were selected on the TEST set by "
                 "the authors (main_LTR.py and main_individual.py, PF's dense runs, keep the "
                 "checkpoint of best test accuracy); ours select on the validation split.")
IMAGENET_TEST_SELECTED = ("The printed DST and EDST ImageNet numbers were selected on the TEST "
                          "set by the authors (ImageNet/main.py:384-407 keeps the checkpoint of "
                          "best accuracy on ImageNet's validation set, which is the test set "
                          "here); ours select on 10% held out of the training set.")
PROTOCOL_NOTE = (f"Protocol: the sparse ensembles (Static, DST, EDST, LTR, PF) ran under "
                 f"{AUTHORS_PROTOCOL}; the Dense Ensemble and single dense model under "
                 f"{QUOTED_PROTOCOL}; with gin/protocol/uniform.gin layered last, every row "
                 f"under the former. {TEST_SELECTED}")


def protocol_notes(methods, table: int, layered) -> list[str]:
    """Which protocol produced each row of a wide table among `methods`; one line when the
    uniform switch was layered over every row (`layered`: the files common to all rows)."""
    present = [name for name in PROTOCOLS if name in set(methods)]
    if not present:
        return []
    test_selected = ([f"- {TEST_SELECTED}"] if {"LTR Ensemble", "PF Ensemble"} & set(present)
                     else [])
    if any(Path(file).as_posix().endswith("protocol/uniform.gin") for file in layered):
        return ["", f"Protocol: every row ran under gin/protocol/uniform.gin, "
                    f"{AUTHORS_PROTOCOL}, whatever protocol its printed number had.",
                *test_selected]
    if table == 3:
        test_selected = [f"- {IMAGENET_TEST_SELECTED}"] if set(present) & {
            "DST Ensemble", "EDST Ensemble"} else []
    return ["", "Protocol of each row (as the printed number's):", "",
            *(f"- {name}: {PROTOCOLS[name]}." for name in present), *test_selected]
