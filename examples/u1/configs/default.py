"""Default U(1) run: a 16 x 16 lattice, beta annealed from 1 to 4.

Sized to train, evaluate and run the HMC baseline in a few minutes on a
laptop-class CPU; see ``paper.py`` for a long run and ``test.py`` for the
seconds-long configuration the tests use.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # "float32" or "float64"; float64 turns on jax_enable_x64 for the run.
    config.precision = "float32"
    # Show tqdm progress bars on stderr.
    config.progress = True

    config.parallel = ml_collections.ConfigDict()
    # How processes share the chains: "none" (one process; its chains are
    # still split over its local devices), "jax" (jax.distributed: one mesh
    # over every process's devices; the default choice on GPU clusters) or
    # "mpi" (mpi4jax: an MPI allreduce of the gradients). Under mpiexec with
    # several ranks, "none" is refused. Chain counts must divide evenly over
    # all devices in use.
    config.parallel.backend = "none"

    config.lattice = ml_collections.ConfigDict()
    config.lattice.size = (16, 16)
    # Training anneals beta upward; evaluation and HMC run at beta_final.
    config.lattice.beta_init = 1.0
    config.lattice.beta_final = 4.0

    config.sampler = ml_collections.ConfigDict()
    config.sampler.num_layers = 4
    config.sampler.step_size = 0.1
    config.sampler.network = "mlp"
    # Used by the "mlp" network.
    config.sampler.hidden_sizes = (64,)
    # Used by the "conv" network.
    config.sampler.channels = (8, 8)
    config.sampler.activation = "swish"
    config.sampler.shared = False
    config.sampler.proposal = "merged"

    config.loss = ml_collections.ConfigDict()
    # lambda of the loss. At 1.0 the gradient is carried by the few chains
    # that barely moved and is mostly noise; at 0.01 the loss is close to
    # -mean(delta) / lambda^2 (l2hmc_jax.loss.LossConfig).
    config.loss.scale = 0.01
    config.loss.charge_weight = 1.0
    config.loss.plaquette_weight = 0.0
    config.loss.burn_in_weight = 0.0

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 600
    config.train.num_chains = 64
    # Beta takes num_eras constant values from beta_init to beta_final.
    config.train.num_eras = 4
    # At 1e-3 the acceptance fell to about 0.3 by beta = 4 in 600 steps; at
    # 1e-4 it stays near 0.75 and tau_int(Q) roughly halves.
    config.train.learning_rate = 1e-4
    # The per-layer step sizes get their own Adam at this rate (None: the
    # networks' rate). On 8 x 8 at beta = 3, 1e-2 lets them grow to where
    # the sampler tunnels 1.3x more than any HMC of as many leapfrog steps
    # within 300 train steps; at 1e-4 they barely move from step_size.
    config.train.step_size_learning_rate = 1e-2
    config.train.clip_norm = 1.0
    # HMC steps that equilibrate the training chains at the start of each era.
    config.train.warmup_steps = 20
    config.train.warmup_num_integration_steps = 10
    config.train.warmup_step_size = 0.1
    config.train.log_every = 20
    config.train.checkpoint_every = 100
    config.train.max_checkpoints = 3
    # Stop after this many train steps in this process, as if killed, without
    # a final checkpoint (0: never). For testing resumption.
    config.train.stop_after = 0

    config.eval = ml_collections.ConfigDict()
    # At most train.num_chains: L2HMC evaluation continues the training chains,
    # HMC starts hot and thermalises while its step size adapts.
    config.eval.num_chains = 32
    # Trajectories discarded as thermalisation; the chain also runs in blocks
    # of this length, so num_steps must be a multiple of it.
    config.eval.num_burnin = 200
    # Trajectories measured after thermalisation.
    config.eval.num_steps = 2000

    config.hmc = ml_collections.ConfigDict()
    # Leapfrog steps per trajectory; 0 matches the force evaluations of one
    # L2HMC trajectory (2N + 1 for N layers per direction).
    config.hmc.num_steps = 0
    config.hmc.num_adaptation_steps = 300
    config.hmc.initial_step_size = 0.1
    config.hmc.target_acceptance = 0.8
    return config
