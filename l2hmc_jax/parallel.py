"""Chains over devices and processes, with the same answer at any split.

Chains are the data-parallel axis. Within a process they are sharded over a
one-dimensional device mesh whose axis is ``"chains"``; `jax.jit` partitions
the train step and the sampler over it, and means over chains (the loss, its
gradients, the metrics) become means over all devices.

Across processes there are two backends, picked by `initialize`:

``"jax"``
    JAX's multi-controller runtime (`jax.distributed.initialize`, which finds
    its peers under Open MPI or Slurm by itself, and through mpi4py under
    other launchers such as Cray MPICH on PBS). The mesh spans every
    process's devices, so the same compiled step runs over all of them.
``"mpi"``
    mpi4jax: each process shards its own chains over its local devices, and
    gradients and metrics are averaged over ranks with an MPI allreduce
    inside a compiled update. For clusters where a JAX coordinator is
    unwanted or MPI is the only fabric.

The answer does not depend on the split because every chain draws from its
own key (`l2hmc_jax.kernels.random`): pass one key per global chain, and
`local_chains` gives each process its slice.
"""

import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from l2hmc_jax import train
from l2hmc_jax.kernels.l2hmc import L2HMC

Array = jax.Array

CHAIN_AXIS = "chains"
BACKENDS = ("none", "jax", "mpi")

# Variables that MPI launchers set in every rank (Open MPI, MPICH/Hydra, PMIx,
# Slurm), read to tell a multi-rank launch from a single process.
_RANK_COUNT_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE")
# Launches that jax.distributed recognises by itself; under others (Cray
# MPICH with PALS on Polaris, MPICH Hydra) it asks mpi4py for its peers.
_JAX_DETECTED_LAUNCHERS = ("OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS")


class Runtime(NamedTuple):
    """Where this process stands among the others.

    Attributes
    ----------
    backend
        ``"none"``, ``"jax"`` or ``"mpi"``.
    rank
        This process's index, 0 for the one that writes files.
    num_processes
        How many processes share the chains.
    mesh
        The chain mesh: every process's devices for ``"jax"``, the local
        ones otherwise.
    comm
        The MPI communicator for ``"mpi"``, else None.
    """

    backend: str
    rank: int
    num_processes: int
    mesh: Mesh
    comm: Any = None

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, metrics and plots."""
        return self.rank == 0

    @property
    def num_devices(self) -> int:
        """Devices over which this process's share of the chains is split."""
        return self.mesh.devices.size


def launched_ranks() -> int:
    """How many ranks the MPI launcher started, from its environment (1 if none)."""
    for name in _RANK_COUNT_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    return 1


def initialize(backend: str = "none") -> Runtime:
    """Joins the other processes (if any) and builds the chain mesh.

    Parameters
    ----------
    backend
        ``"none"`` for one process, ``"jax"`` for `jax.distributed`, ``"mpi"``
        for mpi4jax.

    Returns
    -------
    Runtime

    Raises
    ------
    ValueError
        For an unknown backend, or ``"none"`` under a launcher that started
        several ranks (they would all train alone and write the same files).
    ImportError
        For ``"mpi"`` without mpi4py and mpi4jax installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "none":
        ranks = launched_ranks()
        if ranks > 1:
            raise ValueError(
                f"launched as {ranks} MPI ranks but the parallel backend is "
                "'none'; choose 'jax' (jax.distributed) or 'mpi' (mpi4jax)"
            )
        return Runtime("none", 0, 1, chain_mesh(jax.local_devices()))
    if backend == "jax":
        if launched_ranks() > 1 and not _jax_distributed_ready():
            # CPU processes exchange data through gloo; GPUs use NCCL and
            # ignore this setting.
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            detected = any(name in os.environ for name in _JAX_DETECTED_LAUNCHERS)
            jax.distributed.initialize(
                cluster_detection_method=None if detected else "mpi4py"
            )
        return Runtime(
            "jax", jax.process_index(), jax.process_count(), chain_mesh(jax.devices())
        )
    comm = _mpi_comm()
    return Runtime(
        "mpi", comm.Get_rank(), comm.Get_size(), chain_mesh(jax.local_devices()), comm
    )


def abort_on_error(runtime: Runtime) -> None:
    """Makes an uncaught exception on any rank end the whole job.

    The exception is shown as usual, with a note naming the rank; then an
    MPI abort (or, without MPI, an immediate exit) stops this rank so that
    the launcher ends the others, instead of leaving them waiting in a
    collective this rank will never join.
    """
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if isinstance(value, BaseException):
            value.add_note(f"raised on rank {runtime.rank} of {runtime.num_processes}")
        previous(kind, value, traceback)
        if runtime.num_processes > 1:
            sys.stderr.flush()
            if runtime.comm is not None:
                runtime.comm.Abort(1)
            os._exit(1)

    sys.excepthook = hook


def _jax_distributed_ready() -> bool:
    # jax.process_count() would start the backend, after which
    # jax.distributed.initialize() refuses to run; its client tells instead.
    from jax._src import distributed

    return distributed.global_state.client is not None


def _mpi_comm():
    try:
        import mpi4jax  # noqa: F401
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(
            "the 'mpi' backend needs mpi4py and mpi4jax (and an MPI library): "
            "pip install 'l2hmc_jax[mpi]'"
        ) from error
    return MPI.COMM_WORLD


def chain_mesh(devices=None) -> Mesh:
    """A one-dimensional mesh with axis ``"chains"`` over ``devices``."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (CHAIN_AXIS,))


def chain_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (chain) axis split over the mesh, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(CHAIN_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def check_num_chains(num_chains: int, runtime: Runtime) -> None:
    """Raises unless the chains split evenly over processes and devices."""
    parts = runtime.num_devices
    if runtime.backend == "mpi":
        parts *= runtime.num_processes
    if num_chains % parts:
        raise ValueError(
            f"num_chains ({num_chains}) must be a multiple of the number of "
            f"devices over all processes ({parts})"
        )


def local_chains(x, runtime: Runtime):
    """This process's slice of an array of all chains (leading axis).

    For ``"jax"`` the whole array is kept: the mesh itself spans processes.
    """
    if runtime.backend != "mpi":
        return x
    size = x.shape[0] // runtime.num_processes
    return x[runtime.rank * size : (runtime.rank + 1) * size]


def shard_chains(tree, runtime: Runtime):
    """Places the leading (chain) axis of every leaf over the mesh.

    Every process passes the same global array (``"none"``, ``"jax"``) or its
    own slice of it (``"mpi"``, after `local_chains`).
    """
    return _place(tree, chain_sharding(runtime.mesh))


def replicate(tree, runtime: Runtime):
    """Places a full copy of every leaf on every device of the mesh.

    Every process must pass the same values (see `broadcast_from_main`).
    """
    return _place(tree, replicated_sharding(runtime.mesh))


def _place(tree, sharding):
    def place(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(
            x.dtype, jax.dtypes.prng_key
        ):
            data = place(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])

    return jax.tree.map(place, tree)


def broadcast_from_main(tree, runtime: Runtime):
    """Every process gets the main process's values of ``tree`` (on the host)."""
    if runtime.num_processes == 1:
        return tree
    if runtime.backend == "mpi":
        return runtime.comm.bcast(jax.device_get(tree), root=0)
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(tree)


def gather_chains(x, runtime: Runtime) -> np.ndarray:
    """All chains of a chain-sharded array, as numpy, on every process.

    Chain order is the global one: rank 0's chains first.
    """
    if runtime.backend == "mpi" and runtime.num_processes > 1:
        parts = runtime.comm.allgather(np.asarray(x))
        return np.concatenate(parts, axis=0)
    if runtime.backend == "jax" and runtime.num_processes > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def to_host(tree, runtime: Runtime):
    """Replicated leaves (parameters, metrics) as numpy, on every process."""
    del runtime

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def mpi_mean(tree, comm):
    """Mean over MPI ranks of every leaf, for use inside `jax.jit`.

    Must run on one device per process (mpi4jax's collectives are ordered
    effects, which a multi-device computation cannot hold).
    """
    import mpi4jax
    from mpi4py import MPI

    size = comm.Get_size()

    def mean(x):
        return mpi4jax.allreduce(x, op=MPI.SUM, comm=comm) / size

    return jax.tree.map(mean, tree)


def make_train_step(
    sampler: L2HMC,
    optimizer: optax.GradientTransformation,
    runtime: Runtime,
    loss_config=None,
    target_fn: Callable[[Array], Any] | None = None,
):
    """`l2hmc_jax.train.make_train_step` with chains over devices and processes.

    Parameters
    ----------
    sampler, optimizer, loss_config, target_fn
        As for `l2hmc_jax.train.make_train_step`.
    runtime
        From `initialize`.

    Returns
    -------
    train_step
        ``(TrainState, TrainBatch) -> (TrainState, metrics)``. The state's
        ``params`` and ``opt_state`` are replicated (`replicate`) and its
        ``positions`` chain-sharded (`shard_chains`); ``batch.rng_key`` holds
        one key per chain of this process (sharded the same way) and
        ``batch.beta`` a replicated scalar. Gradients and metrics are means
        over every chain of every process.
    """
    chains = chain_sharding(runtime.mesh)
    whole = replicated_sharding(runtime.mesh)
    state_shardings = train.TrainState(whole, whole, whole, chains)
    batch_shardings = train.TrainBatch(chains, whole)
    if runtime.backend != "mpi" or runtime.num_processes == 1:
        step = train.make_train_step(
            sampler, optimizer, loss_config, target_fn, jit=False
        )
        return jax.jit(
            step,
            in_shardings=(state_shardings, batch_shardings),
            out_shardings=(state_shardings, whole),
        )

    gradient_step = jax.jit(
        train.make_gradient_step(sampler, loss_config, target_fn),
        in_shardings=(state_shardings, batch_shardings),
        out_shardings=(whole, chains, whole),
    )
    device = runtime.mesh.devices.flat[0]

    @jax.jit
    def update(state, grads, metrics, positions):
        grads, metrics = mpi_mean((grads, metrics), runtime.comm)
        return train.apply_gradients(optimizer, state, grads, positions), metrics

    def train_step(state, batch):
        grads, positions, metrics = gradient_step(state, batch)
        # The allreduce runs on one device per process; the chains stay where
        # they are, and the new parameters are copied back to every device.
        replicated = state._replace(positions=jnp.zeros(()))
        on_one = jax.device_put((replicated, grads, metrics), device)
        new_state, metrics = update(*on_one, jnp.zeros(()))
        new_state = replicate(new_state._replace(positions=None), runtime)
        return new_state._replace(positions=positions), metrics

    return train_step
