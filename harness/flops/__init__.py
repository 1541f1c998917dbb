"""FLOPs accounting: forward FLOPs per layer, and the training and test FLOPs built on them.

Conventions (paper App. D, which follows RigL, Evci et al. 2020, App. H and its counting colab
`rigl/imagenet_resnet/colabs/Resnet_50_Param_Flops_Counting.ipynb`):

  * Only nn.Conv2d and nn.Linear layers are counted; normalisation, activations, pooling,
    residual additions and biases are left out (negligible next to the convolutions).
  * One multiply-add is 2 FLOPs.
  * A sparse layer's forward FLOPs are its dense forward FLOPs times its density; a layer
    without a density is dense.
  * Training costs 3x the forward per example and step: the forward, plus a backward that
    computes both the activation gradients and the weight gradients, each about one forward.
  * RigL's exploration steps need the dense weight gradient (to grow by gradient magnitude),
    which costs f_D instead of f_S: averaged over an update interval dT the per-step cost is
    (3 f_S dT + 2 f_S + f_D) / (dT + 1), see `dst_step_flops`.
  * Test FLOPs of an ensemble are the sum of its members' forward FLOPs (paper Table 6).

All figures are per example unless a name says otherwise (`FlopsLedger.total_flops` is the
run's total).
"""
# The counting needs torch; it loads on first use, so that `python -m harness.flops --help`
# (this package is imported first) answers at once.
__all__ = ["COUNTED_LAYERS", "Connectivity", "FlopsLedger", "as_executed", "counted_layer_shapes",
           "dense_forward_flops", "dst_step_flops", "ensemble_test_flops", "layer_forward_flops",
           "ledger_for", "sparse_forward_flops", "training_flops", "weight_densities"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'harness.flops' has no attribute {name!r}")
    from harness.flops import counting

    return getattr(counting, name)
