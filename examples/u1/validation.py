"""Checks a U(1) experiment config before anything is built or compiled."""

import math
import numbers

from l2hmc_jax import networks, parallel
from l2hmc_jax.kernels.l2hmc import PROPOSALS

PRECISIONS = ("float32", "float64")
NETWORKS = ("mlp", "conv")
# The exact results of l2hmc_jax.targets.u1_exact stop at this beta.
_MAX_BETA = 1000.0


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


class _Checker:
    def __init__(self, config):
        self.config = config
        self.errors = []

    def get(self, name):
        value = self.config
        for part in name.split("."):
            value = value[part]
        return value

    def require(self, name, ok, expectation):
        try:
            value = self.get(name)
        except (KeyError, AttributeError):
            self.errors.append(f"config.{name} is missing")
            return
        if not ok(value):
            self.errors.append(f"config.{name} must be {expectation}, got {value!r}")

    def positive_int(self, name):
        self.require(name, lambda v: _is_int(v) and v > 0, "a positive integer")

    def non_negative_int(self, name):
        self.require(name, lambda v: _is_int(v) and v >= 0, "an integer >= 0")

    def positive(self, name):
        self.require(name, lambda v: _is_number(v) and v > 0, "a positive number")

    def non_negative(self, name):
        self.require(name, lambda v: _is_number(v) and v >= 0, "a number >= 0")

    def one_of(self, name, choices):
        self.require(name, lambda v: v in choices, f"one of {choices}")

    def sizes(self, name):
        self.require(
            name,
            lambda v: (
                isinstance(v, tuple | list)
                and len(v) > 0
                and all(_is_int(n) and n > 0 for n in v)
            ),
            "a non-empty sequence of positive integers",
        )


def validate_config(config) -> None:
    """Raises one `ValueError` listing every invalid entry of ``config``.

    Every entry is checked for type and range, and the entries that constrain
    each other (eras and steps, blocks and measured steps) together, so that
    a bad value is reported by name before any network is built or any
    function compiled.
    """
    c = _Checker(config)
    c.one_of("precision", PRECISIONS)
    c.require("progress", lambda v: isinstance(v, bool), "True or False")
    c.require("seed", _is_int, "an integer")
    c.one_of("parallel.backend", parallel.BACKENDS)

    c.require(
        "lattice.size",
        lambda v: (
            isinstance(v, tuple | list)
            and len(v) == 2
            and all(_is_int(n) and n >= 2 for n in v)
        ),
        "a pair of integers >= 2",
    )
    for name in ("lattice.beta_init", "lattice.beta_final"):
        c.require(name, lambda v: _is_number(v) and 0 < v <= _MAX_BETA, "in (0, 1000]")

    c.positive_int("sampler.num_layers")
    c.positive("sampler.step_size")
    c.one_of("sampler.network", NETWORKS)
    c.sizes("sampler.hidden_sizes")
    c.sizes("sampler.channels")
    c.one_of("sampler.activation", tuple(sorted(networks.ACTIVATIONS)))
    c.require("sampler.shared", lambda v: isinstance(v, bool), "True or False")
    c.one_of("sampler.proposal", PROPOSALS)

    c.positive("loss.scale")
    for name in ("charge_weight", "plaquette_weight", "burn_in_weight"):
        c.non_negative(f"loss.{name}")

    c.positive_int("train.num_steps")
    c.positive_int("train.num_chains")
    c.positive_int("train.num_eras")
    c.positive("train.learning_rate")
    c.require(
        "train.step_size_learning_rate",
        lambda v: v is None or (_is_number(v) and v > 0),
        "None or a positive number",
    )
    c.require(
        "train.clip_norm",
        lambda v: v is None or (_is_number(v) and v > 0),
        "None or a positive number",
    )
    c.non_negative_int("train.warmup_steps")
    c.positive_int("train.warmup_num_integration_steps")
    c.positive("train.warmup_step_size")
    c.positive_int("train.log_every")
    c.positive_int("train.checkpoint_every")
    c.positive_int("train.max_checkpoints")
    c.non_negative_int("train.stop_after")

    c.positive_int("eval.num_chains")
    c.positive_int("eval.num_burnin")
    c.positive_int("eval.num_steps")

    c.non_negative_int("hmc.num_steps")
    c.positive_int("hmc.num_adaptation_steps")
    c.positive("hmc.initial_step_size")
    c.require(
        "hmc.target_acceptance", lambda v: _is_number(v) and 0 < v < 1, "in (0, 1)"
    )

    # Relations between entries, only once each entry is valid on its own.
    if not c.errors:
        train, evaluation = config.train, config.eval
        if train.num_eras > train.num_steps:
            c.errors.append(
                f"config.train.num_eras ({train.num_eras}) must be at most "
                f"config.train.num_steps ({train.num_steps})"
            )
        if evaluation.num_steps % evaluation.num_burnin:
            c.errors.append(
                f"config.eval.num_steps ({evaluation.num_steps}) must be a multiple "
                f"of config.eval.num_burnin ({evaluation.num_burnin}), the block "
                "length the chains run in"
            )
        if evaluation.num_chains > train.num_chains:
            c.errors.append(
                f"config.eval.num_chains ({evaluation.num_chains}) must be at most "
                f"config.train.num_chains ({train.num_chains}): evaluation "
                "continues the training chains"
            )
        if config.loss.charge_weight + config.loss.plaquette_weight == 0:
            c.errors.append(
                "config.loss.charge_weight and config.loss.plaquette_weight are "
                "both 0: the loss would reward nothing"
            )
    if c.errors:
        raise ValueError("invalid config:\n  " + "\n  ".join(c.errors))
