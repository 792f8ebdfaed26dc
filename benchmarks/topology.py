r"""The science benchmark: topological autocorrelation of L2HMC and tuned HMC.

Usage, from the repository root::

    python benchmarks/topology.py [--quick] [--betas=3,4,5]

For each beta, on an ``L0 x L1`` lattice:

1. L2HMC (merged proposal, ``N`` layers) is trained with beta annealed from
   ``--beta_init`` to that beta, with HMC warm-up steps at the start of each
   beta era;
2. it samples ``--eval_chains`` chains, continuing the training chains, for
   ``--burnin`` discarded and ``--eval_steps`` recorded trajectories;
3. HMC with as many force evaluations per trajectory (``2N + 1``) has its step
   size tuned by dual averaging to acceptance 0.8 from a hot start, then
   samples the same number of chains and trajectories.

Both report tau_int of the integer charge Q (Sokal's window, c = 5) in
trajectories, force evaluations and seconds, the tunneling rate, acceptance,
and <cos P> and <Q^2> with standard errors beside their exact values. A chain
that never changes Q has no finite tau_int; it is written as null and the
tunneling rate says why. The plot ``topology.png`` shows tau_int in force
evaluations against beta for both samplers.
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
from l2hmc_jax import adaptation, diagnostics  # noqa: E402
from l2hmc_jax import loss as loss_lib  # noqa: E402
from l2hmc_jax import train as train_lib  # noqa: E402
from l2hmc_jax.targets import u1, u1_exact  # noqa: E402

_SIZE = flags.DEFINE_list("size", ["16", "16"], "Lattice size L0,L1.")
_BETAS = flags.DEFINE_list("betas", ["3", "4", "5"], "Betas to measure at.")
_BETA_INIT = flags.DEFINE_float("beta_init", 2.0, "Start of the beta annealing.")
_NUM_LAYERS = flags.DEFINE_integer("num_layers", 4, "N, layers per direction.")
_HIDDEN = flags.DEFINE_list("hidden_sizes", ["64", "64"], "MLP widths.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 1000, "Train steps per beta.")
_NUM_ERAS = flags.DEFINE_integer("num_eras", 4, "Constant-beta eras of training.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate.")
_STEP_SIZE_LEARNING_RATE = flags.DEFINE_float(
    "step_size_learning_rate", 1e-2, "Adam learning rate of the step sizes."
)
_LOSS_SCALE = flags.DEFINE_float("loss_scale", 0.01, "lambda of the loss.")
_TRAIN_CHAINS = flags.DEFINE_integer("train_chains", 64, "Training chains.")
_EVAL_CHAINS = flags.DEFINE_integer("eval_chains", 64, "Chains of each sampler.")
_BURNIN = flags.DEFINE_integer("burnin", 200, "Discarded trajectories.")
_EVAL_STEPS = flags.DEFINE_integer("eval_steps", 2000, "Recorded trajectories.")
_ADAPT_STEPS = flags.DEFINE_integer("adapt_steps", 300, "HMC step-size tuning.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def run_chain(rng_key, algorithm, state, burnin, num_steps, params=None):
    """Burn-in (which also compiles), then ``num_steps`` timed trajectories.

    The chain runs in blocks of ``burnin`` trajectories, so every timed block
    reuses the compiled function of the burn-in.
    """
    state, _ = l2hmc_jax.sample(rng_key, algorithm, state, burnin, params=params)
    traces, start = [], time.perf_counter()
    for i in range(num_steps // burnin):
        key = jax.random.fold_in(rng_key, i + 1)
        state, trace = l2hmc_jax.sample(key, algorithm, state, burnin, params=params)
        traces.append(jax.device_get(trace))
    seconds = (time.perf_counter() - start) / num_steps
    trace = {k: np.concatenate([t[k] for t in traces]) for k in traces[0]}
    return trace, seconds


def _tau(values):
    try:
        tau = diagnostics.integrated_autocorrelation_time(values)
    except ValueError:
        # Chains too short for the window: no estimate rather than a wrong one.
        return None
    return float(tau) if np.isfinite(tau) else None


def measure(trace, beta, size, force_evaluations, seconds_per_trajectory):
    """What the benchmark reports for one sampler at one beta."""
    charge = trace["charge"]
    tau = _tau(charge)
    plaquette, plaquette_error = diagnostics.mean_and_error(trace["plaquette"])
    q2, q2_error = diagnostics.mean_and_error(charge**2)
    return {
        "force_evaluations_per_trajectory": int(force_evaluations),
        "seconds_per_trajectory": seconds_per_trajectory,
        "acceptance": float(np.mean(trace["acceptance_rate"])),
        "tunneling_rate": diagnostics.tunneling_rate(charge),
        "tau_int_q": tau,
        "tau_int_q_force_evaluations": None if tau is None else tau * force_evaluations,
        "tau_int_q_seconds": None if tau is None else tau * seconds_per_trajectory,
        "plaquette": [plaquette, plaquette_error],
        "plaquette_exact": u1_exact.mean_plaquette(beta, size),
        "charge_squared": [q2, q2_error],
        "charge_squared_exact": u1_exact.mean_charge_squared(beta, size),
    }


def train_l2hmc(config, beta, key):
    """Trains L2HMC up to ``beta``; returns the sampler, state and seconds."""
    size = tuple(config["size"])
    n = config["num_layers"]

    def target_fn(b):
        return u1.target(b, size)

    beta_init = min(config["beta_init"], beta)
    sampler = l2hmc_jax.l2hmc(
        target_fn(beta_init),
        n,
        network_kwargs={"hidden_sizes": tuple(config["hidden_sizes"])},
    )
    key_params, key_links, key_train = jax.random.split(key, 3)
    optimizer = train_lib.make_optimizer(
        config["learning_rate"],
        step_size_learning_rate=config["step_size_learning_rate"],
    )
    links = u1.random_links(key_links, config["train_chains"], size)
    state = train_lib.init_train_state(
        sampler.init_params(key_params), optimizer, links
    )
    loss_config = loss_lib.LossConfig(scale=config["loss_scale"])
    train_step = train_lib.make_train_step(
        sampler, optimizer, loss_config, target_fn=target_fn
    )
    warmup = train_lib.make_hmc_warmup(target_fn, 20, 10)
    betas = train_lib.beta_schedule(
        config["train_steps"], beta_init, beta, config["num_eras"]
    )
    era_starts = set(train_lib.era_starts(betas).tolist())
    start = time.perf_counter()
    for step, b in enumerate(betas):
        b = jnp.asarray(b, jnp.float32)
        key_warmup, key_step = jax.random.split(jax.random.fold_in(key_train, step))
        if step in era_starts:
            positions = warmup(key_warmup, state.positions, b, jnp.float32(0.1))
            state = state._replace(positions=positions)
        state, metrics = train_step(state, train_lib.TrainBatch(key_step, b))
        if (step + 1) % 100 == 0:
            logging.info(
                "step %d, beta %.3g: acceptance %.3f",
                step + 1,
                float(b),
                float(metrics["acceptance"]),
            )
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    final = {k: float(v) for k, v in jax.device_get(metrics).items()}
    return sampler.replace_target(target_fn(beta)), state, seconds, final


def run_beta(config, beta):
    """Both samplers at one beta."""
    size = tuple(config["size"])
    key = jax.random.fold_in(jax.random.key(config["seed"]), int(beta * 1000))
    key_train, key_l2hmc, key_links, key_adapt, key_hmc = jax.random.split(key, 5)
    burnin, num_steps = config["burnin"], config["eval_steps"]

    logging.info("beta %g: training L2HMC for %d steps.", beta, config["train_steps"])
    sampler, state, train_seconds, final = train_l2hmc(config, beta, key_train)
    positions = state.positions[: config["eval_chains"]]
    trace, seconds = run_chain(
        key_l2hmc, sampler, positions, burnin, num_steps, state.params
    )
    l2hmc_result = measure(trace, beta, size, sampler.force_evaluations, seconds)
    l2hmc_result["train_seconds"] = train_seconds
    l2hmc_result["final_train_metrics"] = final

    logging.info("beta %g: tuning and running HMC.", beta)
    target = u1.target(beta, size)
    num_leapfrog = sampler.force_evaluations
    hot = u1.random_links(key_links, config["eval_chains"], size)
    adapted = adaptation.find_step_size(
        key_adapt, target, hot, num_leapfrog, config["adapt_steps"]
    )
    hmc = l2hmc_jax.hmc(target, adapted.step_size, num_leapfrog)
    trace, seconds = run_chain(key_hmc, hmc, adapted.state, burnin, num_steps)
    hmc_result = measure(trace, beta, size, num_leapfrog, seconds)
    hmc_result["step_size"] = adapted.step_size

    ratio = {}
    for unit in ("force_evaluations", "seconds"):
        a = hmc_result[f"tau_int_q_{unit}"]
        b = l2hmc_result[f"tau_int_q_{unit}"]
        ratio[unit] = None if a is None or b is None else a / b
    return {"l2hmc": l2hmc_result, "hmc": hmc_result, "hmc_over_l2hmc": ratio}


def plot(figures, path):
    """tau_int of Q in force evaluations against beta, both samplers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in ("hmc", "l2hmc"):
        betas, taus = [], []
        for beta, result in figures.items():
            tau = result[name]["tau_int_q_force_evaluations"]
            if tau is not None:
                betas.append(float(beta))
                taus.append(tau)
        ax.plot(betas, taus, "o-", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("beta")
    ax.set_ylabel("tau_int(Q) [force evaluations]")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quick = harness.QUICK.value
    config = {
        "size": [int(n) for n in _SIZE.value],
        "betas": [float(b) for b in _BETAS.value],
        "beta_init": _BETA_INIT.value,
        "num_layers": _NUM_LAYERS.value,
        "hidden_sizes": [int(n) for n in _HIDDEN.value],
        "train_steps": _TRAIN_STEPS.value,
        "num_eras": _NUM_ERAS.value,
        "learning_rate": _LEARNING_RATE.value,
        "step_size_learning_rate": _STEP_SIZE_LEARNING_RATE.value,
        "loss_scale": _LOSS_SCALE.value,
        "train_chains": _TRAIN_CHAINS.value,
        "eval_chains": _EVAL_CHAINS.value,
        "burnin": _BURNIN.value,
        "eval_steps": _EVAL_STEPS.value,
        "adapt_steps": _ADAPT_STEPS.value,
        "seed": _SEED.value,
    }
    if quick:
        config.update(
            size=[8, 8],
            betas=[3.0],
            num_layers=1,
            hidden_sizes=[8],
            train_steps=8,
            num_eras=2,
            train_chains=8,
            eval_chains=8,
            burnin=40,
            eval_steps=80,
            adapt_steps=20,
        )
    if config["eval_chains"] > config["train_chains"]:
        raise app.UsageError("eval_chains must not exceed train_chains")
    if config["eval_steps"] % config["burnin"]:
        raise app.UsageError("eval_steps must be a multiple of burnin")

    figures = {}
    for beta in config["betas"]:
        figures[str(beta)] = run_beta(config, beta)
    path = harness.write_result(
        "topology", quick, config, figures, output_dir=harness.OUTPUT_DIR.value
    )
    plot(figures, path.with_suffix(".png"))

    rows = []
    for beta, result in figures.items():
        for name in ("l2hmc", "hmc"):
            r = result[name]
            rows.append(
                [
                    beta,
                    name,
                    r["acceptance"],
                    r["tunneling_rate"],
                    r["tau_int_q"],
                    r["tau_int_q_force_evaluations"],
                    r["tau_int_q_seconds"],
                    f"{r['plaquette'][0]:.4f}({r['plaquette'][1]:.1g}) "
                    f"vs {r['plaquette_exact']:.4f}",
                    f"{r['charge_squared'][0]:.3f}({r['charge_squared'][1]:.1g}) "
                    f"vs {r['charge_squared_exact']:.3f}",
                ]
            )
    header = [
        "beta",
        "sampler",
        "acceptance",
        "tunneling",
        "tau_int(Q)",
        "tau [forces]",
        "tau [s]",
        "<cos P> vs exact",
        "<Q^2> vs exact",
    ]
    print(harness.table(header, rows))
    for beta, result in figures.items():
        print(f"beta {beta}: HMC/L2HMC tau_int ratio {result['hmc_over_l2hmc']}")
    print(f"Written to {path}")


if __name__ == "__main__":
    app.run(main)
