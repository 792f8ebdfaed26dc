r"""ESS per gradient evaluation of L2HMC and tuned HMC on the toy densities.

Usage, from the repository root::

    python benchmarks/toy_ess.py [--quick] [--targets=rough_well,...]

The four densities of Levy, Hoffman and Sohl-Dickstein (2018), from
`l2hmc_jax.targets.toy`. For each:

- L2HMC (merged proposal, ``N`` layers, one hidden layer) is trained with
  the ESJD loss and then samples;
- HMC is tuned fairly: for each number of leapfrog steps in
  ``--hmc_num_steps`` its step size is adapted by dual averaging to
  acceptance 0.8, and the trajectory length with the best ESS per gradient
  is reported (the others are kept in the JSON).

The estimator, documented here because the ratio depends on it: for every
observable the target records, ``tau_int`` is Sokal's windowed estimate
(c = 5, `l2hmc_jax.diagnostics`) pooled over chains, and
``ESS per gradient = 1 / (tau_int * gradient evaluations per trajectory)``.
A sampler is scored by its worst observable (the smallest ESS per
gradient). Levy et al. report ESS per gradient of the slowest coordinate
with a different estimator, so the ratios compare in kind, not digit by
digit.
"""

import pathlib
import sys

# Run as a script, Python puts only this directory on the path.
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import l2hmc_jax  # noqa: E402
from benchmarks import harness  # noqa: E402
from l2hmc_jax import adaptation, diagnostics  # noqa: E402
from l2hmc_jax import train as train_lib  # noqa: E402
from l2hmc_jax.targets import toy  # noqa: E402

TARGETS = toy.TARGETS
# Ratios Levy et al. (2018) report for ESS per gradient, L2HMC over HMC.
PAPER_RATIOS = {
    "ill_conditioned_gaussian": 37.0,
    "strongly_correlated_gaussian": 106.0,
    "rough_well": 5.0,
    "mixture_of_gaussians": 100.0,
}

_TARGETS = flags.DEFINE_list("targets", list(TARGETS), "Toy targets to run.")
_NUM_LAYERS = flags.DEFINE_integer("num_layers", 5, "N, layers per direction.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 32, "Units of the hidden layer.")
_STEP_SIZE = flags.DEFINE_float("step_size", 0.1, "Initial L2HMC step size.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 2000, "L2HMC train steps.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_STEP_SIZE_LEARNING_RATE = flags.DEFINE_float(
    "step_size_learning_rate", 1e-2, "Adam learning rate of the step sizes."
)
_NUM_CHAINS = flags.DEFINE_integer("num_chains", 64, "Chains, training too.")
_BURNIN = flags.DEFINE_integer("burnin", 200, "Discarded trajectories.")
_EVAL_STEPS = flags.DEFINE_integer("eval_steps", 2000, "Recorded trajectories.")
_HMC_NUM_STEPS = flags.DEFINE_list(
    "hmc_num_steps", ["5", "10", "20", "40"], "HMC leapfrog steps to try."
)
_ADAPT_STEPS = flags.DEFINE_integer("adapt_steps", 500, "HMC step-size tuning.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def run_chain(rng_key, algorithm, state, burnin, num_steps, params=None):
    """Burn-in (which also compiles), then ``num_steps`` timed trajectories."""
    state, _ = l2hmc_jax.sample(rng_key, algorithm, state, burnin, params=params)
    traces, start = [], time.perf_counter()
    for i in range(num_steps // burnin):
        key = jax.random.fold_in(rng_key, i + 1)
        state, trace = l2hmc_jax.sample(key, algorithm, state, burnin, params=params)
        traces.append(jax.device_get(trace))
    seconds = (time.perf_counter() - start) / num_steps
    trace = {k: np.concatenate([t[k] for t in traces]) for k in traces[0]}
    return trace, seconds


def ess_per_gradient(target, trace, gradients_per_trajectory, seconds):
    """Per-observable tau_int and ESS per gradient, and the worst of them."""
    observables = {}
    for name in target.observables_fn(np.zeros(target.event_shape)):
        try:
            tau = float(diagnostics.integrated_autocorrelation_time(trace[name]))
        except ValueError:
            tau = float("inf")
        observables[name] = {
            "tau_int": tau,
            "ess_per_gradient": 1.0 / (tau * gradients_per_trajectory),
        }
    worst = min(v["ess_per_gradient"] for v in observables.values())
    return {
        "gradients_per_trajectory": int(gradients_per_trajectory),
        "seconds_per_trajectory": seconds,
        "acceptance": float(np.mean(trace["acceptance_rate"])),
        "observables": observables,
        "ess_per_gradient": worst,
        "ess_per_second": worst * gradients_per_trajectory / seconds,
    }


def run_target(config, name, key):
    """L2HMC and the best tuned HMC on one toy target."""
    target = TARGETS[name]()
    key_params, key_x, key_train, key_l2hmc, key_hmc = jax.random.split(key, 5)
    burnin, num_steps = config["burnin"], config["eval_steps"]

    sampler = l2hmc_jax.l2hmc(
        target,
        config["num_layers"],
        step_size=config["step_size"],
        network_kwargs={"hidden_sizes": (config["hidden_size"],)},
    )
    optimizer = train_lib.make_optimizer(
        config["learning_rate"],
        step_size_learning_rate=config["step_size_learning_rate"],
    )
    positions = jax.random.normal(key_x, (config["num_chains"],) + target.event_shape)
    state = train_lib.init_train_state(
        sampler.init_params(key_params), optimizer, positions
    )
    train_step = train_lib.make_train_step(sampler, optimizer)
    logging.info("%s: training L2HMC for %d steps.", name, config["train_steps"])
    start = time.perf_counter()
    for step in range(config["train_steps"]):
        batch = train_lib.TrainBatch(jax.random.fold_in(key_train, step), 0.0)
        state, _ = train_step(state, batch)
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - start
    trace, seconds = run_chain(
        key_l2hmc, sampler, state.positions, burnin, num_steps, state.params
    )
    l2hmc_result = ess_per_gradient(target, trace, sampler.force_evaluations, seconds)
    l2hmc_result["train_seconds"] = train_seconds

    hmc_results = {}
    for num_leapfrog in config["hmc_num_steps"]:
        logging.info("%s: HMC with %d leapfrog steps.", name, num_leapfrog)
        key_adapt, key_chain = jax.random.split(
            jax.random.fold_in(key_hmc, num_leapfrog)
        )
        adapted = adaptation.find_step_size(
            key_adapt, target, positions, num_leapfrog, config["adapt_steps"]
        )
        hmc = l2hmc_jax.hmc(target, adapted.step_size, num_leapfrog)
        trace, seconds = run_chain(key_chain, hmc, adapted.state, burnin, num_steps)
        result = ess_per_gradient(target, trace, num_leapfrog, seconds)
        result["step_size"] = adapted.step_size
        hmc_results[str(num_leapfrog)] = result
    best = max(hmc_results, key=lambda k: hmc_results[k]["ess_per_gradient"])
    hmc_best = hmc_results[best]
    ratio = (
        l2hmc_result["ess_per_gradient"] / hmc_best["ess_per_gradient"]
        if hmc_best["ess_per_gradient"] > 0
        else None
    )
    return {
        "l2hmc": l2hmc_result,
        "hmc": hmc_results,
        "hmc_best_num_steps": int(best),
        "ratio_ess_per_gradient": ratio,
        "paper_ratio": PAPER_RATIOS[name],
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quick = harness.QUICK.value
    config = {
        "targets": list(_TARGETS.value),
        "num_layers": _NUM_LAYERS.value,
        "hidden_size": _HIDDEN.value,
        "step_size": _STEP_SIZE.value,
        "train_steps": _TRAIN_STEPS.value,
        "learning_rate": _LEARNING_RATE.value,
        "step_size_learning_rate": _STEP_SIZE_LEARNING_RATE.value,
        "num_chains": _NUM_CHAINS.value,
        "burnin": _BURNIN.value,
        "eval_steps": _EVAL_STEPS.value,
        "hmc_num_steps": [int(n) for n in _HMC_NUM_STEPS.value],
        "adapt_steps": _ADAPT_STEPS.value,
        "seed": _SEED.value,
    }
    unknown = set(config["targets"]) - set(TARGETS)
    if unknown:
        raise app.UsageError(f"unknown targets {sorted(unknown)}")
    if quick:
        if not flags.FLAGS["targets"].present:
            # Every target runs the same code; one keeps the check cheap.
            config["targets"] = ["strongly_correlated_gaussian"]
        config.update(
            num_layers=2,
            hidden_size=8,
            train_steps=10,
            num_chains=8,
            burnin=20,
            eval_steps=40,
            hmc_num_steps=[4],
            adapt_steps=20,
        )
    if config["eval_steps"] % config["burnin"]:
        raise app.UsageError("eval_steps must be a multiple of burnin")

    figures = {}
    key = jax.random.key(config["seed"])
    for i, name in enumerate(config["targets"]):
        figures[name] = run_target(config, name, jax.random.fold_in(key, i))
    path = harness.write_result(
        "toy_ess",
        quick,
        config,
        figures,
        output_dir=harness.OUTPUT_DIR.value,
        estimator="min over observables of 1 / (tau_int * gradients per trajectory)",
    )

    rows = []
    for name, result in figures.items():
        best = result["hmc"][str(result["hmc_best_num_steps"])]
        rows.append(
            [
                name,
                result["l2hmc"]["ess_per_gradient"],
                result["l2hmc"]["acceptance"],
                best["ess_per_gradient"],
                result["hmc_best_num_steps"],
                best["acceptance"],
                result["ratio_ess_per_gradient"],
                result["paper_ratio"],
            ]
        )
    header = [
        "target",
        "L2HMC ESS/grad",
        "L2HMC acc",
        "HMC ESS/grad",
        "HMC steps",
        "HMC acc",
        "ratio",
        "paper ratio",
    ]
    print(harness.table(header, rows))
    print(f"Written to {path}")


if __name__ == "__main__":
    app.run(main)
