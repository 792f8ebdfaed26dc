r"""L2HMC against tuned HMC on the toy densities of Levy et al. (2018).

Usage, from the repository root::

    python examples/toy/main.py --workdir=workdir/toy \
        [--target=strongly_correlated_gaussian] [--train_steps=1000]

Trains an L2HMC sampler on one of ``l2hmc_jax.targets.toy``, tunes HMC to
the same number of force evaluations per trajectory, samples both and writes
``summary.json`` and ``summary.md`` to the workdir: for each recorded
observable its mean and second moment against the exact values, and its
integrated autocorrelation time in trajectories and force evaluations.
"""

import json
import os
import pathlib
import sys
import time

# Run as a script, Python puts only this directory on the path.
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import l2hmc_jax  # noqa: E402
from l2hmc_jax import adaptation, diagnostics  # noqa: E402
from l2hmc_jax import train as train_lib  # noqa: E402
from l2hmc_jax.targets import toy  # noqa: E402

TARGETS = toy.TARGETS

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the summary.")
_TARGET = flags.DEFINE_enum(
    "target", "strongly_correlated_gaussian", list(TARGETS), "The toy density."
)
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 1000, "L2HMC train steps.")
_NUM_LAYERS = flags.DEFINE_integer("num_layers", 5, "Leapfrog layers per direction.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 32, "Units of the one hidden layer.")
_STEP_SIZE = flags.DEFINE_float("step_size", 0.1, "Initial L2HMC step size.")
_NUM_CHAINS = flags.DEFINE_integer("num_chains", 64, "Chains, for training too.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 2000, "Recorded trajectories.")
_NUM_BURNIN = flags.DEFINE_integer("num_burnin", 200, "Discarded trajectories.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def _positive(name, value):
    if not (isinstance(value, int | float) and value > 0):
        raise ValueError(f"{name} must be positive, got {value!r}")


def _exact(target, name):
    """Exact first and second moments of the observable ``name``."""
    mean, covariance = toy.exact_moments(target)
    if name == "radius_squared":
        return None, None
    i = int(name[1:])
    return float(mean[i]), float(covariance[i, i] + mean[i] ** 2)


def _estimate(values, exact):
    mean, error = diagnostics.mean_and_error(values)
    finite = error if np.isfinite(error) else None
    z = None if exact is None or not finite else (mean - exact) / finite
    return {"mean": mean, "stderr": finite, "exact": exact, "z": z}


def _tau(values):
    try:
        tau = diagnostics.integrated_autocorrelation_time(values)
    except ValueError:
        return None
    return float(tau) if np.isfinite(tau) else None


def measure(target, trace, force_evaluations, seconds) -> dict:
    """Moments and autocorrelation times of every recorded observable."""
    result = {
        "force_evaluations_per_trajectory": int(force_evaluations),
        "seconds_per_trajectory": seconds,
        "acceptance": float(np.mean(trace["acceptance_rate"])),
        "observables": {},
    }
    for name in target.observables_fn(np.zeros(target.event_shape)):
        values = np.asarray(trace[name], np.float64)
        mean, second = _exact(target, name)
        tau = _tau(values)
        result["observables"][name] = {
            "mean": _estimate(values, mean),
            "second_moment": _estimate(values**2, second),
            "tau_int": tau,
            "tau_int_force_evaluations": None
            if tau is None
            else tau * force_evaluations,
        }
    return result


def _sample(key, algorithm, state, num_burnin, num_samples, params=None):
    # The burn-in call compiles; a second call of the same length is then
    # timed alone, and the chain is recorded in blocks of that length.
    state, _ = l2hmc_jax.sample(key, algorithm, state, num_burnin, params=params)
    traces, start = [], time.perf_counter()
    for i in range(num_samples // num_burnin):
        state, trace = l2hmc_jax.sample(
            jax.random.fold_in(key, i + 1), algorithm, state, num_burnin, params=params
        )
        traces.append(jax.device_get(trace))
    seconds = (time.perf_counter() - start) / num_samples
    return {k: np.concatenate([t[k] for t in traces]) for k in traces[0]}, seconds


def run(
    workdir,
    target_name="strongly_correlated_gaussian",
    *,
    train_steps=1000,
    num_layers=5,
    hidden_size=32,
    step_size=0.1,
    num_chains=64,
    num_samples=2000,
    num_burnin=200,
    seed=0,
) -> dict:
    """Trains L2HMC on a toy target, compares it with HMC, writes the summary."""
    if target_name not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)}, got {target_name!r}")
    for name, value in (
        ("train_steps", train_steps),
        ("num_layers", num_layers),
        ("hidden_size", hidden_size),
        ("step_size", step_size),
        ("num_chains", num_chains),
        ("num_samples", num_samples),
        ("num_burnin", num_burnin),
    ):
        _positive(name, value)
    if num_samples % num_burnin:
        raise ValueError(
            f"num_samples ({num_samples}) must be a multiple of num_burnin "
            f"({num_burnin}), the block length the chains run in"
        )

    target = TARGETS[target_name]()
    key_params, key_x, key_train, key_l2hmc, key_hmc = jax.random.split(
        jax.random.key(seed), 5
    )
    sampler = l2hmc_jax.l2hmc(
        target,
        num_layers,
        step_size=step_size,
        network_kwargs={"hidden_sizes": (hidden_size,)},
    )
    optimizer = train_lib.make_optimizer(1e-3, step_size_learning_rate=1e-2)
    positions = jax.random.normal(key_x, (num_chains,) + target.event_shape)
    state = train_lib.init_train_state(
        sampler.init_params(key_params), optimizer, positions
    )
    train_step = train_lib.make_train_step(sampler, optimizer)
    logging.info("Training L2HMC on %s for %d steps.", target_name, train_steps)
    start = time.perf_counter()
    for step in range(train_steps):
        batch = train_lib.TrainBatch(jax.random.fold_in(key_train, step), 0.0)
        state, metrics = train_step(state, batch)
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - start
    logging.info("Last train step: %s", jax.device_get(metrics))

    trace, seconds = _sample(
        key_l2hmc, sampler, state.positions, num_burnin, num_samples, state.params
    )
    l2hmc_result = measure(target, trace, sampler.force_evaluations, seconds)

    num_steps = sampler.force_evaluations
    adapted = adaptation.find_step_size(key_hmc, target, positions, num_steps)
    hmc = l2hmc_jax.hmc(target, adapted.step_size, num_steps)
    trace, seconds = _sample(key_hmc, hmc, adapted.state, num_burnin, num_samples)
    hmc_result = measure(target, trace, num_steps, seconds)
    hmc_result["step_size"] = adapted.step_size

    summary = {
        "target": target_name,
        "train_steps": train_steps,
        "train_seconds": train_seconds,
        "samplers": {"l2hmc": l2hmc_result, "hmc": hmc_result},
    }
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, allow_nan=False)
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write(markdown(summary))
    return summary


def _cell(estimate):
    if estimate["stderr"] is None:
        return f"{estimate['mean']:.4g}"
    text = f"{estimate['mean']:.4g} +- {estimate['stderr']:.2g}"
    if estimate["exact"] is not None:
        text += f" (exact {estimate['exact']:.4g})"
    return text


def _number(value):
    return "n/a" if value is None else f"{value:.4g}"


def markdown(summary) -> str:
    """``summary.md``: one table per sampler."""
    lines = [f"# {summary['target']}", ""]
    for name, result in summary["samplers"].items():
        lines += [
            f"## {name}: acceptance {result['acceptance']:.3f}, "
            f"{result['force_evaluations_per_trajectory']} force evaluations "
            "per trajectory",
            "",
            "| observable | mean | second moment | tau_int | tau_int [force evals] |",
            "|---|---|---|---|---|",
        ]
        for obs, values in result["observables"].items():
            lines.append(
                f"| {obs} | {_cell(values['mean'])} | "
                f"{_cell(values['second_moment'])} | {_number(values['tau_int'])} | "
                f"{_number(values['tau_int_force_evaluations'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run(
        _WORKDIR.value,
        _TARGET.value,
        train_steps=_TRAIN_STEPS.value,
        num_layers=_NUM_LAYERS.value,
        hidden_size=_HIDDEN.value,
        step_size=_STEP_SIZE.value,
        num_chains=_NUM_CHAINS.value,
        num_samples=_NUM_SAMPLES.value,
        num_burnin=_NUM_BURNIN.value,
        seed=_SEED.value,
    )
    logging.info("Summary in %s/summary.md", _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
