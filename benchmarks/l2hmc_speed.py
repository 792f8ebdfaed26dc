r"""L2HMC training and sampling throughput, FLOP/s and memory on 2D U(1).

Usage, from the repository root::

    python benchmarks/l2hmc_speed.py [--quick]

At each chain count it measures, in one process:

- train steps per second (`l2hmc_jax.train.make_train_step`, Adam);
- evaluation trajectories per second, chains times trajectories over wall
  seconds, for the trained kernel run by `lax.scan`;
- HMC trajectories of ``2N`` leapfrog steps (as many leapfrog layers as one
  merged L2HMC proposal) and of ``2N + 1`` (as many force evaluations), timed in
  alternation with the L2HMC ones, and the median ratio of seconds;
- compile seconds of each;
- FLOP/s achieved, from XLA's cost analysis, against the FLOP/s of a large
  float32 matmul measured here. XLA counts the body of a loop once whatever
  its trip count, so the FLOPs of one trajectory (or train step) are taken as
  ``N`` times those of the same function with ``N = 1``, compiled apart; that
  counts the per-trajectory work outside the layers (momentum, accept) ``N``
  times, which the networks dwarf.

Then the memory of one train step at ``--memory_chains`` chains and
``--memory_layers`` layers, with and without per-layer rematerialisation,
from the compiled executable's memory analysis (it is compiled, not run),
and the peak resident memory of the process.
"""

import pathlib
import sys

# Run as a script, Python puts only this directory on the path.
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import l2hmc_jax  # noqa: E402
from benchmarks import harness  # noqa: E402
from l2hmc_jax import train as train_lib  # noqa: E402
from l2hmc_jax.targets import u1  # noqa: E402

_SIZE = flags.DEFINE_list("size", ["16", "16"], "Lattice size L0,L1.")
_BETA = flags.DEFINE_float("beta", 4.0, "Inverse coupling.")
_NUM_LAYERS = flags.DEFINE_integer("num_layers", 4, "N, layers per direction.")
_HIDDEN = flags.DEFINE_list(
    "hidden_sizes", None, "MLP widths; the library's default when unset."
)
_NUM_CHAINS = flags.DEFINE_list("num_chains", ["256", "2048"], "Chain counts.")
_TRAJECTORIES = flags.DEFINE_integer("trajectories", 2, "Trajectories per call.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed calls of each function.")
_MEMORY_LAYERS = flags.DEFINE_integer("memory_layers", 8, "N of the memory check.")
_MEMORY_CHAINS = flags.DEFINE_integer("memory_chains", 2048, "Chains, memory check.")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", 2048, "Matmul FLOP/s probe size.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")

_GIB = 2.0**30


def make_sampler(config, num_layers, remat=False):
    """The L2HMC sampler of the benchmark, merged proposal."""
    kwargs = None
    if config["hidden_sizes"]:
        kwargs = {"hidden_sizes": tuple(config["hidden_sizes"])}
    target = u1.target(config["beta"], tuple(config["size"]))
    return l2hmc_jax.l2hmc(
        target, num_layers, network_kwargs=kwargs, proposal="merged", remat=remat
    )


def sampling_run(step, num_trajectories, with_params):
    """``run(rng_key, state, params) -> state`` over ``num_trajectories``."""

    def run(rng_key, state, params):
        def one(state, key):
            if with_params:
                return step(key, state, params)[0], None
            return step(key, state)[0], None

        keys = jax.random.split(rng_key, num_trajectories)
        return jax.lax.scan(one, state, keys)[0]

    return run


def train_setup(config, num_layers, num_chains, remat=False):
    """A train step (not jitted), its state and one batch."""
    sampler = make_sampler(config, num_layers, remat)
    key_params, key_links, key_step = jax.random.split(
        jax.random.key(config["seed"]), 3
    )
    optimizer = train_lib.make_optimizer(1e-4)
    links = u1.random_links(key_links, num_chains, tuple(config["size"]))
    state = train_lib.init_train_state(
        sampler.init_params(key_params), optimizer, links
    )
    step = train_lib.make_train_step(sampler, optimizer, jit=False)
    batch = train_lib.TrainBatch(key_step, jnp.asarray(config["beta"], jnp.float32))
    return sampler, step, state, batch


def flops(compiled) -> float | None:
    """XLA's FLOP count of a compiled function, None where it has none."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def matmul_flops_per_second(size, rounds) -> float:
    """Median FLOP/s of a ``size x size`` float32 matmul."""
    a = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    compiled, _ = harness.compile_function(jnp.matmul, a, a)
    jax.block_until_ready(compiled(a, a))
    seconds = [harness.run_seconds(compiled, a, a) for _ in range(rounds)]
    return 2.0 * size**3 / float(np.median(seconds))


def per_trajectory_flops(config, num_chains):
    """FLOPs of one evaluation trajectory and of one train step, N layers."""
    n = config["num_layers"]
    sampler, step, state, batch = train_setup(config, 1, num_chains)
    train_compiled, _ = harness.compile_function(step, state, batch)
    run = sampling_run(sampler.step, 1, with_params=True)
    chains = sampler.init(state.positions)
    eval_compiled, _ = harness.compile_function(
        run, batch.rng_key, chains, state.params
    )
    eval_flops, train_flops = flops(eval_compiled), flops(train_compiled)
    return (
        None if eval_flops is None else n * eval_flops,
        None if train_flops is None else n * train_flops,
    )


def measure_chains(config, num_chains):
    """Every speed figure at one chain count."""
    n = config["num_layers"]
    rounds = config["rounds"]
    sampler, step, state, batch = train_setup(config, n, num_chains)

    train_compiled, train_compile = harness.compile_function(step, state, batch)
    # The train step returns a new state; timing feeds it back, as training does.
    state, _ = train_compiled(state, batch)
    jax.block_until_ready(state)
    train_seconds = []
    for i in range(rounds):
        batch = batch._replace(rng_key=jax.random.fold_in(batch.rng_key, i))
        start = time.perf_counter()
        state, metrics = train_compiled(state, batch)
        jax.block_until_ready((state, metrics))
        train_seconds.append(time.perf_counter() - start)

    trajectories = config["trajectories"]
    key = jax.random.key(config["seed"] + 1)
    chains = sampler.init(state.positions)
    l2hmc_run = sampling_run(sampler.step, trajectories, with_params=True)
    l2hmc_compiled, l2hmc_compile = harness.compile_function(
        l2hmc_run, key, chains, state.params
    )
    hmc = {}
    for name, num_steps in (("hmc_same_layers", 2 * n), ("hmc_same_forces", 2 * n + 1)):
        algorithm = l2hmc_jax.hmc(sampler.target, 0.1, num_steps)
        run = sampling_run(algorithm.step, trajectories, with_params=False)
        hmc_state = algorithm.init(state.positions)
        compiled, compile_seconds = harness.compile_function(run, key, hmc_state, None)
        hmc[name] = (compiled, compile_seconds, hmc_state, num_steps)

    calls = {"l2hmc": lambda: l2hmc_compiled(key, chains, state.params)}
    for name, (compiled, _, hmc_state, _) in hmc.items():
        calls[name] = lambda c=compiled, s=hmc_state: c(key, s, None)
    for call in calls.values():
        jax.block_until_ready(call())
    seconds = harness.alternate(calls, rounds)

    if n == 1:
        # One layer: the loops that XLA counts once run once per trajectory
        # (the scan over trajectories is counted once, as one trajectory).
        eval_flops, train_flops = flops(l2hmc_compiled), flops(train_compiled)
    else:
        eval_flops, train_flops = per_trajectory_flops(config, num_chains)
    train_median = float(np.median(train_seconds))
    eval_median = float(np.median(seconds["l2hmc"]))
    figures = {
        "train_compile_seconds": train_compile,
        "train_seconds": train_seconds,
        "train_steps_per_second": 1.0 / train_median,
        "eval_compile_seconds": l2hmc_compile,
        "eval_seconds": seconds["l2hmc"],
        "eval_trajectories_per_second": num_chains * trajectories / eval_median,
        "force_evaluations_per_trajectory": sampler.force_evaluations,
        "eval_flops_per_trajectory": eval_flops,
        "train_flops_per_step": train_flops,
        "eval_flops_per_second": None
        if eval_flops is None
        else eval_flops * trajectories / eval_median,
        "train_flops_per_second": None
        if train_flops is None
        else train_flops / train_median,
        "peak_rss_bytes_so_far": harness.peak_rss_bytes(),
    }
    for name, (_, compile_seconds, _, num_steps) in hmc.items():
        median = float(np.median(seconds[name]))
        figures[name] = {
            "num_steps": num_steps,
            "compile_seconds": compile_seconds,
            "seconds": seconds[name],
            "trajectories_per_second": num_chains * trajectories / median,
            "l2hmc_cost_ratio_median": harness.median_ratio(
                seconds["l2hmc"], seconds[name]
            ),
        }
    return figures, train_compiled, train_compile


def train_memory(config, num_layers, num_chains, remat, compiled=None):
    """Bytes the compiled train step needs, from XLA's memory analysis.

    ``compiled`` is an already compiled step of that shape, to reuse.
    """
    seconds = None
    if compiled is None:
        _, step, state, batch = train_setup(config, num_layers, num_chains, remat)
        compiled, seconds = harness.compile_function(step, state, batch)
    memory = compiled.memory_analysis()
    if memory is None:
        return {"available": False, "compile_seconds": seconds}
    return {
        "available": True,
        "compile_seconds": seconds,
        "argument_bytes": memory.argument_size_in_bytes,
        "output_bytes": memory.output_size_in_bytes,
        "temp_bytes": memory.temp_size_in_bytes,
        "alias_bytes": memory.alias_size_in_bytes,
        # Arguments, outputs and temporaries live at once in the worst case;
        # donated (aliased) buffers are counted once.
        "total_bytes": memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quick = harness.QUICK.value
    config = {
        "size": [int(n) for n in _SIZE.value],
        "beta": _BETA.value,
        "num_layers": _NUM_LAYERS.value,
        "hidden_sizes": None
        if _HIDDEN.value is None
        else [int(n) for n in _HIDDEN.value],
        "num_chains": [int(n) for n in _NUM_CHAINS.value],
        "trajectories": _TRAJECTORIES.value,
        "rounds": _ROUNDS.value,
        "memory_layers": _MEMORY_LAYERS.value,
        "memory_chains": _MEMORY_CHAINS.value,
        "memory_remat": [True, False],
        "matmul_size": _MATMUL_SIZE.value,
        "seed": _SEED.value,
    }
    if quick:
        config.update(
            size=[8, 8],
            num_layers=1,
            hidden_sizes=[16],
            num_chains=[16],
            trajectories=1,
            rounds=2,
            memory_layers=1,
            # The train step measured above: its memory costs no compile.
            memory_chains=16,
            memory_remat=[False],
            matmul_size=256,
        )

    figures = {"matmul_flops_per_second": None, "chains": {}}
    figures["matmul_flops_per_second"] = matmul_flops_per_second(
        config["matmul_size"], 5
    )
    compiled_steps = {}
    for num_chains in config["num_chains"]:
        logging.info("Measuring %d chains.", num_chains)
        fig, compiled, _ = measure_chains(config, num_chains)
        figures["chains"][str(num_chains)] = fig
        compiled_steps[(config["num_layers"], num_chains, False)] = compiled
    memory = {}
    for remat in config["memory_remat"]:
        logging.info("The memory check (remat=%s).", remat)
        shape = (config["memory_layers"], config["memory_chains"], remat)
        memory["remat" if remat else "no_remat"] = train_memory(
            config, *shape, compiled=compiled_steps.get(shape)
        )
    figures["train_memory"] = memory
    figures["peak_rss_bytes"] = harness.peak_rss_bytes()
    path = harness.write_result(
        "l2hmc_speed", quick, config, figures, output_dir=harness.OUTPUT_DIR.value
    )

    matmul = figures["matmul_flops_per_second"]
    rows = []
    for num_chains, fig in figures["chains"].items():
        eval_rate = fig["eval_flops_per_second"]
        rows.append(
            [
                num_chains,
                fig["train_steps_per_second"],
                fig["eval_trajectories_per_second"],
                fig["hmc_same_layers"]["l2hmc_cost_ratio_median"],
                fig["hmc_same_forces"]["l2hmc_cost_ratio_median"],
                fig["train_compile_seconds"],
                fig["eval_compile_seconds"],
                None if eval_rate is None else eval_rate / matmul,
            ]
        )
    header = [
        "chains",
        "train steps/s",
        "eval traj/s",
        "L2HMC/HMC(2N) s",
        "L2HMC/HMC(2N+1) s",
        "train compile s",
        "eval compile s",
        "eval FLOP/s / matmul",
    ]
    print(harness.table(header, rows))
    print(f"matmul: {matmul:.3g} FLOP/s")
    for name, m in memory.items():
        if m["available"]:
            print(
                f"train step, N={config['memory_layers']}, "
                f"{config['memory_chains']} chains, {name}: "
                f"{m['total_bytes'] / _GIB:.3g} GiB"
            )
    print(f"peak resident memory: {figures['peak_rss_bytes'] / _GIB:.3g} GiB")
    print(f"Written to {path}")


if __name__ == "__main__":
    app.run(main)
