"""What the members are made of (paper §5.1, Figs. 6-7, App. F): each member's overall and
per-layer density, and how much the connectivities of two members overlap.

A member's connectivity is its `masks` attribute when the method attached one (sparse
tickets: exact, including connections regrown at zero), otherwise its nonzero weights.
"""
import itertools
from typing import Sequence

import torch
from torch import nn

from harness.flops import COUNTED_LAYERS


def connectivity(member: nn.Module) -> dict[str, torch.Tensor]:
    masks = getattr(member, "masks", None)
    layers = {name: module.weight for name, module in member.named_modules()
              if isinstance(module, COUNTED_LAYERS)}
    return {name: (masks[name] if masks and name in masks else weight != 0).bool()
            for name, weight in layers.items()}


def structure_rows(members: Sequence[nn.Module]) -> list[dict]:
    """Rows {member, metric, value}: 'density' and 'density/<layer>' per member, and
    'mask_jaccard' (|A and B| / |A or B| over all counted weights) per pair 'i-j'."""
    masks = [connectivity(member) for member in members]
    rows = []
    for index, member_masks in enumerate(masks):
        active = sum(int(mask.sum()) for mask in member_masks.values())
        total = sum(mask.numel() for mask in member_masks.values())
        rows.append({"member": str(index), "metric": "density", "value": active / total})
        rows += [{"member": str(index), "metric": f"density/{name}",
                  "value": float(mask.float().mean())} for name, mask in member_masks.items()]
    for i, j in itertools.combinations(range(len(masks)), 2):
        both = sum(int((masks[i][n] & masks[j][n]).sum()) for n in masks[i])
        either = sum(int((masks[i][n] | masks[j][n]).sum()) for n in masks[i])
        rows.append({"member": f"{i}-{j}", "metric": "mask_jaccard",
                     "value": both / either if either else 1.0})
    return rows
