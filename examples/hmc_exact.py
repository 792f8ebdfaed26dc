"""Tuned HMC on 2D U(1), measured against the exact finite-volume results.

python examples/hmc_exact.py --beta=4 --size=16,16 --num_chains=64
"""

import time

import jax
import numpy as np
from absl import app, flags, logging

import l2hmc_jax
from l2hmc_jax import adaptation, diagnostics
from l2hmc_jax.targets import u1, u1_exact

_BETA = flags.DEFINE_float("beta", 4.0, "Inverse coupling.")
_SIZE = flags.DEFINE_list("size", ["16", "16"], "Lattice size L0,L1.")
_CHAINS = flags.DEFINE_integer("num_chains", 64, "Independent chains.")
_LEAPFROG = flags.DEFINE_integer("num_leapfrog", 10, "Leapfrog steps per trajectory.")
_THERM = flags.DEFINE_integer("num_thermalise", 500, "Adaptation steps.")
_STEPS = flags.DEFINE_integer("num_steps", 2000, "Measured trajectories.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def main(argv):
    del argv
    size = tuple(int(n) for n in _SIZE.value)
    beta = _BETA.value
    target = u1.target(beta, size)
    key_links, key_adapt, key_sample = jax.random.split(jax.random.key(_SEED.value), 3)
    links = u1.random_links(key_links, _CHAINS.value, size)
    logging.info("devices: %s", jax.devices())

    start = time.perf_counter()
    tuned = adaptation.find_step_size(
        key_adapt, target, links, _LEAPFROG.value, _THERM.value
    )
    logging.info("step size %.4f after %d steps", tuned.step_size, _THERM.value)
    algorithm = l2hmc_jax.hmc(target, tuned.step_size, _LEAPFROG.value)
    _, trace = l2hmc_jax.sample(
        key_sample, algorithm, tuned.state, _STEPS.value, progress=True
    )
    seconds = time.perf_counter() - start

    plaquette = np.asarray(trace["plaquette"], np.float64)
    charge = np.asarray(trace["charge"], np.float64)
    rows = [
        ("<cos P>", plaquette, u1_exact.mean_plaquette(beta, size)),
        ("<Q^2>", charge**2, u1_exact.mean_charge_squared(beta, size)),
    ]
    logging.info("%d x %d lattice, beta = %g, %.1f s", *size, beta, seconds)
    logging.info("acceptance %.3f", float(np.mean(trace["acceptance_rate"])))
    for name, values, exact in rows:
        mean, error = diagnostics.mean_and_error(values)
        logging.info(
            "%-8s measured %.5f +- %.5f   exact %.5f   (%.1f sigma)",
            name,
            mean,
            error,
            exact,
            (mean - exact) / error,
        )
    tau = diagnostics.integrated_autocorrelation_time(charge)
    logging.info("tau_int(Q) = %.1f trajectories", tau)


if __name__ == "__main__":
    app.run(main)
