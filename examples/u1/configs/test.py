"""A seconds-long configuration for the end-to-end tests: a 4 x 4 lattice."""

import ml_collections

from examples.u1.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.progress = False
    # One process; tests/test_examples_mpi.py picks "jax" or "mpi" on the
    # command line.
    config.parallel.backend = "none"
    config.lattice.size = (4, 4)
    config.lattice.beta_init = 1.0
    config.lattice.beta_final = 2.0
    config.sampler.num_layers = 2
    config.sampler.hidden_sizes = (16,)
    config.train.num_steps = 40
    config.train.num_chains = 16
    config.train.num_eras = 2
    config.train.warmup_steps = 10
    config.train.log_every = 5
    config.train.checkpoint_every = 10
    config.eval.num_chains = 16
    config.eval.num_burnin = 100
    config.eval.num_steps = 400
    config.hmc.num_adaptation_steps = 100
    return config
