"""The sparse-training core shared by the sparse ensemble methods (paper Sec. 3, App. A):
layer-wise density allocation (`distributions`) and exact-count masks with RigL/SET
prune-and-grow kept by a training hook (`masking`)."""
from methods.sparse.distributions import layer_densities, layer_nonzeros, prunable_layers
from methods.sparse.masking import MaskConfiguration, Masking, SparsitySpec

__all__ = ["MaskConfiguration", "Masking", "SparsitySpec", "layer_densities",
           "layer_nonzeros", "prunable_layers"]
