"""Markov kernels: `hmc` and, built on the same pieces, `l2hmc`."""

from l2hmc_jax.kernels import base, hmc
from l2hmc_jax.kernels.base import SamplingAlgorithm

__all__ = ["SamplingAlgorithm", "base", "hmc"]
