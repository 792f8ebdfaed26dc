"""Targets: 2D U(1) lattice gauge theory, its exact results, toy densities."""

from l2hmc_jax.targets import base, toy, u1, u1_exact
from l2hmc_jax.targets.base import Target, make_target

__all__ = ["Target", "base", "make_target", "toy", "u1", "u1_exact"]
