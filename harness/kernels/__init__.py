"""Sparse arithmetic on the CPU: the direct sparse convolution (its C++ source travels as
package data and is built on first use), sparse inference of a trained network, and the
timing of kernels against each other."""

# The kernels a conv of a sparse network runs with (harness/kernels/inference.py), here so that
# a command naming them in its --help need not load torch.
KERNELS = ("direct", "csr", "gemm", "dense")
