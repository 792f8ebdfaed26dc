r"""Trains and evaluates L2HMC on 2D U(1) and compares it with tuned HMC.

Usage, from the repository root::

    python examples/u1/main.py --config=examples/u1/configs/default.py \
        --workdir=workdir/u1 [--mode=all|train|evaluate|hmc] \
        [--config.precision=float64] [--config.train.num_steps=1000]

Rerunning with the same workdir resumes training from its latest checkpoint.

Several processes, one per GPU or per node, share the chains when launched
with ``mpiexec -n R python examples/u1/main.py ... --config.parallel.backend=jax``
(or ``=mpi``); only rank 0 writes the workdir. See ``MULTINODE.md``.
"""

import logging as pylogging
import pathlib
import sys

# Run as a script, Python puts only this directory on the path; the configs
# and modules import `examples.*` from the repository root.
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from examples.u1 import experiment  # noqa: E402
from examples.u1.validation import validate_config  # noqa: E402
from l2hmc_jax import parallel  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, e.g. examples/u1/configs/default.py."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for all outputs.")
_MODE = flags.DEFINE_enum(
    "mode", "all", experiment.MODES, "What to run; 'all' runs the other three."
)
flags.mark_flags_as_required(["config", "workdir"])


class _QuietOrbax(pylogging.Filter):
    """Drops Orbax's INFO records (several per checkpoint), keeps its warnings."""

    def filter(self, record):
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


# Launchers whose variables jax.distributed reads by itself.
def log_runtime(runtime: parallel.Runtime, config) -> None:
    """One line per process: its rank, its devices and its chains per device."""
    devices = runtime.num_devices
    if runtime.backend == "mpi":
        devices *= runtime.num_processes
    local = jax.local_devices()
    logging.info(
        "Rank %d of %d (parallel backend %r): %d local %s device(s) of %d in "
        "all; %d training and %d evaluation chains per device.",
        runtime.rank,
        runtime.num_processes,
        runtime.backend,
        len(local),
        local[0].platform,
        devices,
        config.train.num_chains // devices,
        config.eval.num_chains // devices,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    # A bad value is named before any process waits for the others.
    validate_config(config)
    # Before any other JAX call: jax.distributed must join its peers before
    # the backend starts.
    runtime = parallel.initialize(config.parallel.backend)
    parallel.abort_on_error(runtime)
    logging.get_absl_handler().addFilter(_QuietOrbax())
    experiment.check_chains(config, runtime)
    log_runtime(runtime, config)
    if not runtime.is_main:
        # The main process reports the run; the others only their warnings.
        logging.set_verbosity(logging.WARNING)
    summary = experiment.run(config, _WORKDIR.value, _MODE.value, runtime)
    if summary is None:
        logging.info("Training stopped early; rerun to resume.")
    else:
        logging.info("Summary in %s/summary.md", _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
