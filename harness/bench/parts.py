"""What harness/bench/suite.py and the benches beside it (bench_sparse_kernels.py, loader_bench.py)
share: the result record, synthetic CIFAR-shaped data and the models and loops they time."""
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from harness.data.arrays import ArrayDataset
from harness.flops import layer_forward_flops, ledger_for
from harness.models.wide_resnet import wide_resnet
from harness.engine.train import Trainer

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGE_SHAPE = (3, 32, 32)



@dataclass
class Result:
    name: str
    value: float | None  # the ratio (None: skipped)
    target: str  # e.g. '<= 1.03'; 'informational'
    met: bool | None  # None: no target, or skipped
    note: str = ""
    detail: dict = field(default_factory=dict)
    spread: dict | None = None  # min, median, max of the ratio round by round


def synthetic(count: int, seed: int = 0) -> ArrayDataset:
    generator = torch.Generator().manual_seed(seed)
    return ArrayDataset(torch.randint(0, 256, (count, *IMAGE_SHAPE), dtype=torch.uint8,
                                      generator=generator),
                        torch.randint(0, 10, (count,), generator=generator), 10,
                        CIFAR_MEAN, CIFAR_STD)


def harness_epoch(model: torch.nn.Module, dataset: ArrayDataset, trainer: Trainer,
                  hooks: list) -> Callable[[], None]:
    """One epoch through Trainer.fit with the FLOPs ledger every run attaches."""
    ledger = ledger_for(layer_forward_flops(model, IMAGE_SHAPE), hooks)

    def run() -> None:
        trainer.fit(model, dataset, seed=0, hooks=[*hooks, ledger], epochs=1)
    return run


def masked_wrn(depth: int, width: int, sparsity: float, seed: int = 0) -> torch.nn.Module:
    """A WRN member at `sparsity` (ERK, as the sparse methods train), with non-trivial
    batch-norm statistics, in eval mode."""
    from methods.sparse.masking import Masking, SparsitySpec

    torch.manual_seed(seed)
    model = wide_resnet(depth, width)
    Masking(model, SparsitySpec(sparsity), seed=seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def folded_dense(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.jit.ScriptModule, dict]:
    """The best dense form of `model` a user would deploy on a CPU, the second baseline of the
    sparse inference figures: traced on `x`, frozen (which folds each batch norm that follows
    a conv alone into the conv's weight and bias) and optimised for inference (oneDNN's
    prepacked convs). In the pre-activation WRN only each block's bn2 (after its conv1) and
    the first block's bn1 (after the first conv) fold; the others follow a residual sum.
    Returns the module and {"batch_norms": in the model, "folded": how many froze away}."""
    def batch_norms(graph) -> int:
        return sum(node.kind() == "aten::batch_norm" for node in graph.nodes())

    with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.compile
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model.eval(), x)
        frozen = torch.jit.freeze(traced)
        optimized = torch.jit.optimize_for_inference(frozen)
    before = batch_norms(traced.inlined_graph)
    return optimized, {"batch_norms": before, "folded": before - batch_norms(frozen.graph)}
