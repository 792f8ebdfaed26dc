"""A long run at the scale of published L2HMC studies of 2D U(1).

16 x 16 links, beta annealed from 1 to 6, ten layers per direction and two
hidden layers of 256 units, trained for 20000 steps. It is meant for a GPU or
hours of CPU time; it is not tuned to reproduce any paper's numbers.
"""

import ml_collections

from examples.u1.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    # Run on one GPU as it is; over several GPUs or nodes, launch_pbs.sh (or
    # mpiexec with --config.parallel.backend=jax or mpi) splits the chains,
    # and both chain counts must be multiples of the number of GPUs.
    config.parallel.backend = "none"
    config.lattice.beta_init = 1.0
    config.lattice.beta_final = 6.0
    config.sampler.num_layers = 10
    config.sampler.hidden_sizes = (256, 256)
    config.sampler.step_size = 0.05
    config.loss.plaquette_weight = 0.1
    config.train.num_steps = 20000
    config.train.num_chains = 256
    config.train.num_eras = 10
    config.train.learning_rate = 1e-3
    config.train.log_every = 50
    config.train.checkpoint_every = 1000
    config.eval.num_chains = 128
    config.eval.num_burnin = 1000
    config.eval.num_steps = 10000
    config.hmc.num_adaptation_steps = 1000
    return config
