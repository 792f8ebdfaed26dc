"""l2hmc_jax: learned Hamiltonian Monte Carlo in pure JAX.

The main entry points are `sample`, which runs any kernel in one compiled
scan, and the kernels `hmc` (and `l2hmc`); targets live in
`l2hmc_jax.targets`, estimators of sampler quality in
`l2hmc_jax.diagnostics`.
"""

from l2hmc_jax import adaptation, diagnostics, dynamics, loss, networks, targets, train
from l2hmc_jax.kernels.hmc import hmc
from l2hmc_jax.kernels.l2hmc import l2hmc
from l2hmc_jax.sampling import sample

__all__ = [
    "adaptation",
    "diagnostics",
    "dynamics",
    "hmc",
    "l2hmc",
    "loss",
    "networks",
    "sample",
    "targets",
    "train",
]
__version__ = "0.1.0"
