r"""Trains and evaluates L2HMC on 2D U(1) and compares it with tuned HMC.

Usage, from the repository root::

    python examples/u1/main.py --config=examples/u1/configs/default.py \
        --workdir=workdir/u1 [--mode=all|train|evaluate|hmc] \
        [--config.precision=float64] [--config.train.num_steps=1000]

Rerunning with the same workdir resumes training from its latest checkpoint.
"""

import logging as pylogging
import pathlib
import sys

# Run as a script, Python puts only this directory on the path; the configs
# and modules import `examples.*` from the repository root.
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from examples.u1 import experiment  # noqa: E402

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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_QuietOrbax())
    summary = experiment.run(_CONFIG.value, _WORKDIR.value, _MODE.value)
    if summary is None:
        logging.info("Training stopped early; rerun to resume.")
    else:
        logging.info("Summary in %s/summary.md", _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
