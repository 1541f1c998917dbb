"""Where members' diversity arises: KL divergence between the members' intermediate feature
maps, layer by layer (paper §5.1, Fig. 2 left: "each line is the averaged KL divergence among
M = 3 subnetworks").

The paper does not say how a feature map becomes a distribution; we follow the authors' code
(FreeTickets `ensemble_freetickets.py`, `loss_fn_kd` on forward-hook outputs):

* the output of a layer, [B, C, H, W] for a convolution or [B, C] for a linear layer, is
  turned into distributions by a softmax over its channel axis (dim 1), one distribution per
  example and spatial position (torch's implicit softmax dimension for 4-D tensors, as their
  `F.softmax(scores)` takes it);
* KL(p_i || p_j) is summed over channels and spatial positions and averaged over the examples
  (`F.kl_div(..., reduction="batchmean")`), so a layer with larger maps can give larger values;
* a layer's figure is the mean over all ordered pairs (i, j), i != j, of members (their code
  lists both directions of each pair; harness/evaluation/metrics.py `member_pairs`, the convention of
  every diversity number we print);
* the layers are every convolution and linear layer (those the FLOPs count), in the order the
  network defines them; the last is the classifier, whose KL is the predictions' (§5.1);
* the examples are one test batch of 128 images, as in their code (`replay.TEST_BATCH`,
  drawn at random), the members in evaluation mode.
"""
from typing import Sequence

import torch
from torch import nn

from harness.flops import COUNTED_LAYERS
from harness.evaluation.metrics import kl_divergence, member_pairs


def layer_outputs(member: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output of every convolution and linear layer of `member` on `inputs`."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [module.register_forward_hook(
        lambda module, args, output, name=name: outputs.__setitem__(name, output.detach()))
        for name, module in member.named_modules() if isinstance(module, COUNTED_LAYERS)]
    try:
        with torch.no_grad():
            member.eval()(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def feature_map_kl(members: Sequence[nn.Module], inputs: torch.Tensor) -> dict[str, float]:
    """{layer: mean over ordered member pairs of KL(p_i || p_j)} of the members' feature maps
    on `inputs` (the conventions above); 0 for every layer of identical members."""
    if len(members) < 2:
        raise ValueError("feature-map KL needs at least two members")
    maps = [layer_outputs(member, inputs) for member in members]
    result = {}
    for name in maps[0]:
        log_probs = [member_maps[name].double().log_softmax(dim=1) for member_maps in maps]
        pairs = [float(kl_divergence(log_probs[i], log_probs[j])) / inputs.shape[0]
                 for i, j in member_pairs(len(members))]
        result[name] = sum(pairs) / len(pairs)
    return result
