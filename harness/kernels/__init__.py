"""Sparse arithmetic on the CPU: the direct sparse convolution (its C++ source travels as
package data and is built on first use), sparse inference of a trained network, and the
timing of kernels against each other."""
