"""A few train and sampling steps under a parallel backend, for test_parallel.

    python tests/parallel_worker.py --backend=none --devices=4 --out=run.npz
    mpirun -np 2 python tests/parallel_worker.py --backend=mpi --devices=2 ...

Every run trains the same global set of chains from the same seed, so the
parameters it writes must not depend on the backend or the split.
"""

import argparse
import os
import signal
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="none")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num_chains", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fail_rank", type=int, default=-1)
    parser.add_argument("--kill_rank", type=int, default=-1)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

    import jax
    import numpy as np

    from l2hmc_jax import l2hmc, parallel, sample, train
    from l2hmc_jax.targets import u1

    runtime = parallel.initialize(args.backend)
    parallel.abort_on_error(runtime)
    if runtime.rank == args.fail_rank:
        raise RuntimeError("told to fail")
    if runtime.rank == args.kill_rank:
        os.kill(os.getpid(), signal.SIGKILL)
    parallel.check_num_chains(args.num_chains, runtime)

    size = (4, 4)
    sampler = l2hmc(
        u1.target(1.5, size),
        num_layers=2,
        network_kwargs={"hidden_sizes": (16,), "output_scale": 0.1},
    )
    optimizer = train.make_optimizer(1e-2)
    params = sampler.init_params(jax.random.key(runtime.rank))
    params = parallel.broadcast_from_main(jax.device_get(params), runtime)
    links = u1.random_links(jax.random.key(100), args.num_chains, size)
    state = train.init_train_state(params, optimizer, links)
    state = train.TrainState(
        parallel.replicate(state.step, runtime),
        parallel.replicate(state.params, runtime),
        parallel.replicate(state.opt_state, runtime),
        parallel.shard_chains(parallel.local_chains(links, runtime), runtime),
    )
    step = parallel.make_train_step(sampler, optimizer, runtime)
    betas = train.beta_schedule(args.steps, 1.0, 2.0)
    for i in range(args.steps):
        keys = jax.random.split(jax.random.key(1000 + i), args.num_chains)
        batch = train.TrainBatch(
            parallel.shard_chains(parallel.local_chains(keys, runtime), runtime),
            parallel.replicate(np.float32(betas[i]), runtime),
        )
        state, metrics = step(state, batch)

    keys = jax.random.split(jax.random.key(7), args.num_chains)
    keys = parallel.shard_chains(parallel.local_chains(keys, runtime), runtime)
    params = parallel.replicate(parallel.to_host(state.params, runtime), runtime)
    _, trace = sample(keys, sampler, state.positions, 4, params=params)
    # Collectives: every rank takes part, only the main one writes.
    plaquette = parallel.gather_chains(trace["plaquette"].T, runtime).T
    positions = parallel.gather_chains(state.positions, runtime)

    if runtime.is_main:
        leaves = jax.tree.leaves(parallel.to_host(state.params, runtime))
        np.savez(
            args.out,
            *leaves,
            positions=positions,
            plaquette=plaquette,
            loss=parallel.to_host(metrics["loss"], runtime),
            num_processes=runtime.num_processes,
            num_devices=runtime.num_devices,
        )
    print(f"rank {runtime.rank} done", file=sys.stderr)


if __name__ == "__main__":
    main()
