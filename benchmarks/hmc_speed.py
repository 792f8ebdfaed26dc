r"""HMC leapfrog throughput on 2D U(1): ours against BlackJAX's.

Usage, from the repository root::

    python benchmarks/hmc_speed.py [--quick] [--rounds=7]

Each contestant runs ``--trajectories`` HMC trajectories of ``--num_steps``
leapfrog steps in one compiled `lax.scan`, on all chains at once:

- ``ours``: `l2hmc_jax.hmc` on `l2hmc_jax.targets.u1.target`, with its
  analytic force;
- ``ours_roll_force``: the same kernel with the force written as two
  `jnp.roll`\ s of ``sin P``, as it was before the force learnt to compute each
  sine once: what that change is worth;
- ``blackjax``: ``blackjax.hmc`` on the Wilson log-density of one
  configuration (gradients by autodiff, as BlackJAX takes them), vmapped over
  chains. Skipped, and said so in the JSON, without the ``bench`` extra.

Compilation is timed apart. The timed calls alternate (A B C A B C ...), and
the ratio of throughputs is taken within each round, then the median over
rounds. The figure of merit is leapfrog steps per second, chains times
trajectories times steps per trajectory over wall seconds.
"""

import pathlib
import sys

# Run as a script, Python puts only this directory on the path.
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import l2hmc_jax  # noqa: E402
from benchmarks import harness  # noqa: E402
from l2hmc_jax.targets import base, u1  # noqa: E402

_SIZE = flags.DEFINE_list("size", ["16", "16"], "Lattice size L0,L1.")
_BETA = flags.DEFINE_float("beta", 4.0, "Inverse coupling.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 8, "Leapfrog steps per trajectory.")
_STEP_SIZE = flags.DEFINE_float("step_size", 0.1, "Leapfrog step size.")
_NUM_CHAINS = flags.DEFINE_list("num_chains", ["256", "2048"], "Chain counts.")
_TRAJECTORIES = flags.DEFINE_integer("trajectories", 20, "Trajectories per timed call.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Timed calls of each contestant.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def roll_force(x, beta):
    """The force as `u1.force` computed it before: rolls of ``sin P``."""
    sin_p = jnp.sin(u1.plaquettes(x))
    f0 = sin_p - jnp.roll(sin_p, 1, axis=-1)
    f1 = jnp.roll(sin_p, 1, axis=-2) - sin_p
    return beta * jnp.stack([f0, f1], axis=-3)


def roll_force_target(beta, size):
    """`u1.target` with `roll_force` as its force."""
    target = u1.target(beta, size)
    return target._replace(logdensity_grad_fn=lambda x: -roll_force(x, beta))


def ours(target, step_size, num_steps, num_trajectories):
    """``run(rng_key, positions) -> positions`` with `l2hmc_jax.hmc`."""
    algorithm = l2hmc_jax.hmc(target, step_size, num_steps)

    def run(rng_key, positions):
        def one(state, key):
            return algorithm.step(key, state)[0], None

        state = algorithm.init(positions)
        keys = jax.random.split(rng_key, num_trajectories)
        return jax.lax.scan(one, state, keys)[0].position

    return run


def blackjax_hmc(beta, size, step_size, num_steps, num_trajectories):
    """``run(rng_key, positions) -> positions`` with ``blackjax.hmc``."""
    import blackjax

    def logdensity_fn(x):
        return -u1.action(x, beta)

    dim = 2 * size[0] * size[1]
    algorithm = blackjax.hmc(logdensity_fn, step_size, jnp.ones(dim), num_steps)

    def run(rng_key, positions):
        num_chains = positions.shape[0]
        step = jax.vmap(algorithm.step)

        def one(state, key):
            return step(jax.random.split(key, num_chains), state)[0], None

        state = jax.vmap(algorithm.init)(positions)
        keys = jax.random.split(rng_key, num_trajectories)
        # BlackJAX does not wrap angles; the density is periodic, so wrapping
        # the result once makes the outputs comparable without changing it.
        return base.wrap(jax.lax.scan(one, state, keys)[0].position)

    return run


def measure(num_chains, config, contestants, rounds):
    """Compiles and times every contestant at ``num_chains`` chains."""
    size = tuple(config["size"])
    key_links, key_run = jax.random.split(jax.random.key(config["seed"]))
    positions = u1.random_links(key_links, num_chains, size)
    compiled, compile_seconds = {}, {}
    for name, run in contestants.items():
        compiled[name], compile_seconds[name] = harness.compile_function(
            run, key_run, positions
        )
        # One untimed call: the first run of a compiled function pays for
        # allocations the later ones reuse.
        jax.block_until_ready(compiled[name](key_run, positions))
    calls = {
        name: (lambda fn=fn: fn(key_run, positions)) for name, fn in compiled.items()
    }
    seconds = harness.alternate(calls, rounds)
    work = num_chains * config["trajectories"] * config["num_steps"]
    figures = {}
    for name in contestants:
        rates = work / np.asarray(seconds[name])
        figures[name] = {
            "compile_seconds": compile_seconds[name],
            "seconds": seconds[name],
            "leapfrog_steps_per_second_median": float(np.median(rates)),
        }
    for name in contestants:
        if name != "ours":
            # Seconds of the other over ours: ours's speed-up, round by round.
            figures[f"speedup_over_{name}_median"] = harness.median_ratio(
                seconds[name], seconds["ours"]
            )
    return figures


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quick = harness.QUICK.value
    config = {
        "size": [int(n) for n in _SIZE.value],
        "beta": _BETA.value,
        "num_steps": _NUM_STEPS.value,
        "step_size": _STEP_SIZE.value,
        "num_chains": [int(n) for n in _NUM_CHAINS.value],
        "trajectories": _TRAJECTORIES.value,
        "rounds": _ROUNDS.value,
        "seed": _SEED.value,
    }
    if quick:
        config.update(num_chains=[64], trajectories=2, rounds=2)
    size = tuple(config["size"])
    beta = config["beta"]
    args = (config["step_size"], config["num_steps"], config["trajectories"])
    contestants = {
        "ours": ours(u1.target(beta, size), *args),
        "ours_roll_force": ours(roll_force_target(beta, size), *args),
    }
    blackjax_note = None
    if harness.has_blackjax():
        contestants["blackjax"] = blackjax_hmc(beta, size, *args)
    else:
        blackjax_note = "BlackJAX is not installed (pip install -e '.[bench]')"
        logging.warning("%s: timing our kernels only.", blackjax_note)

    figures = {}
    for num_chains in config["num_chains"]:
        logging.info("Timing %d chains.", num_chains)
        figures[str(num_chains)] = measure(
            num_chains, config, contestants, config["rounds"]
        )
    path = harness.write_result(
        "hmc_speed",
        quick,
        config,
        figures,
        output_dir=harness.OUTPUT_DIR.value,
        blackjax_missing=blackjax_note,
    )

    rows = []
    for num_chains, fig in figures.items():
        for name in contestants:
            rows.append(
                [
                    num_chains,
                    name,
                    fig[name]["leapfrog_steps_per_second_median"],
                    fig[name]["compile_seconds"],
                    fig.get(f"speedup_over_{name}_median", 1.0),
                ]
            )
    header = ["chains", "kernel", "leapfrog steps/s", "compile s", "ours speed-up"]
    print(harness.table(header, rows))
    if blackjax_note:
        print(blackjax_note)
    print(f"Written to {path}")


if __name__ == "__main__":
    app.run(main)
