"""Wall-clock inference time of a run's ensemble, recorded beside its test FLOPs (issue: do
FLOPs savings become time savings?).

`inference_timing` times one forward pass of the whole predictor (every member) on a batch of
`batch_size` random inputs of the run's image shape, on the run's device, in inference mode:
one warm-up pass, then the median of `rounds` passes, divided by the batch size (the rows;
summary.json's `inference_timing.seconds_per_image` keeps min, median and max). For a sparse
run it also times the same members converted to sparse inference (harness/kernels/inference.py,
kernels chosen by measurement at that batch size), alternating rounds with the dense form.

Rows (suite 'timing', member 'ensemble'): `inference_seconds_per_image` and, for sparse runs,
`sparse_inference_seconds_per_image`. The batch size, device and thread count go to
summary.json (`inference_timing`). Wall-clock depends on the machine and its load: tables show
it, harness/tables/diff.py never compares it.
"""
import inspect

import gin
import torch

from harness.core.errors import check_integer

from harness.evaluation.predictors import MemberEnsemble, Predictor
from harness.kernels.inference import choose_kernels, sparsify
from harness.kernels.timing import round_seconds, spread

SUITE = "timing"
DENSE = "inference_seconds_per_image"
SPARSE = "sparse_inference_seconds_per_image"
METRICS = (DENSE, SPARSE)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@gin.configurable
def inference_timing(predictor: Predictor, image_shape: tuple[int, ...], device: torch.device,
                     sparse: bool, enabled: bool = True, batch_size: int = 64,
                     rounds: int = 5) -> tuple[list[dict], dict]:
    """Rows {member, metric, value} and the summary entry; no rows when not `enabled` (the
    golden table, whose numbers must not depend on the machine)."""
    if not enabled:
        return [], {"enabled": False}
    check_settings(batch_size, rounds)
    predictor.eval()
    inputs = torch.randn(batch_size, *image_shape, device=device)
    forms = [predictor]
    if sparse:
        networks = []
        for member in predictor.members():
            plans, _ = choose_kernels(member, image_shape, [batch_size], rounds=3)
            networks.append(sparsify(member, plans))
        forms.append(MemberEnsemble(networks).eval())

    def forward(form):
        def call():
            form(inputs)
            _synchronize(device)
        return call

    with torch.inference_mode():
        seconds = round_seconds([forward(form) for form in forms], rounds)
    per_image = {metric: {name: value / batch_size for name, value in spread(series).items()}
                 for metric, series in zip(METRICS, seconds)}
    rows = [{"member": "ensemble", "metric": metric, "value": figures["median"]}
            for metric, figures in per_image.items()]
    return rows, {"enabled": True, "batch_size": batch_size, "rounds": rounds,
                  "seconds_per_image": per_image,
                  "device": str(device), "threads": torch.get_num_threads(),
                  "sparse_form": sparse}


def check_settings(batch_size: int, rounds: int) -> None:
    check_integer("inference_timing.batch_size", batch_size, 1)
    check_integer("inference_timing.rounds", rounds, 1)


def check_bound_settings() -> None:
    """The configured batch size and rounds, checked before training rather than when the
    trained members are timed."""
    given = {name: parameter.default
             for name, parameter in inspect.signature(inference_timing).parameters.items()}
    given.update(gin.get_bindings(inference_timing))
    if given["enabled"]:
        check_settings(given["batch_size"], given["rounds"])
