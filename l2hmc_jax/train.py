"""Training L2HMC with optax: train state, jitted train step, beta schedule."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2hmc_jax import loss as loss_lib
from l2hmc_jax.kernels import base, random
from l2hmc_jax.kernels import hmc as hmc_kernel
from l2hmc_jax.kernels.l2hmc import L2HMC
from l2hmc_jax.targets.base import Target

Array = jax.Array


class TrainState(NamedTuple):
    """What one train step carries to the next.

    Attributes
    ----------
    step
        Number of train steps taken.
    params
        Network parameters and log step sizes.
    opt_state
        The optax state.
    positions
        The training chains, ``(num_chains,) + event_shape``. Each train step
        is also one L2HMC transition of these chains.
    """

    step: Array
    params: Any
    opt_state: Any
    positions: Array


class TrainBatch(NamedTuple):
    """The per-step inputs of `make_train_step`'s ``train_step``.

    Attributes
    ----------
    rng_key
        One `jax.random.key` for all chains, or one per chain (shape
        ``(num_chains,)``, typed or raw ``uint32`` key data). Per-chain keys
        make the step independent of how the chains are split over devices
        and processes (`l2hmc_jax.parallel`).
    beta
        The inverse coupling of this step (used when ``target_fn`` is given).
    """

    rng_key: Array
    beta: Array


def make_optimizer(
    learning_rate: float | optax.Schedule = 1e-3,
    clip_norm: float | None = 1.0,
    decay_steps: int | None = None,
    decay_rate: float = 0.5,
    warmup_steps: int = 0,
    step_size_learning_rate: float | optax.Schedule | None = None,
) -> optax.GradientTransformation:
    """Adam with gradient clipping and an optional schedule.

    Parameters
    ----------
    learning_rate
        A float, or any optax schedule (which then overrides the decay).
    clip_norm
        Clip gradients to this global norm; None turns clipping off.
    decay_steps, decay_rate
        If given, multiply the learning rate by ``decay_rate`` every
        ``decay_steps`` steps (smoothly).
    warmup_steps
        Linear warm-up from 0 over this many steps.
    step_size_learning_rate
        If given, the learning rate of the log step sizes (the
        ``log_eps_*`` entries of L2HMC parameters), which then get their
        own Adam, with the same decay and warm-up; ``learning_rate`` is
        left to the networks. The step sizes are a handful of parameters
        with a clear signal and the networks many with a noisy one. On 8 x 8
        U(1) at beta = 3, 300 steps at ``1e-2`` for the step sizes and
        ``1e-4`` to ``3e-4`` for the networks train well; ``1e-3`` for the
        networks costs acceptance, and ``1e-3`` for the step sizes moves them
        too little to matter. None: one Adam for everything.
    """
    schedule = _schedule(
        "learning_rate", learning_rate, decay_steps, decay_rate, warmup_steps
    )
    parts = [] if clip_norm is None else [optax.clip_by_global_norm(clip_norm)]
    if step_size_learning_rate is None:
        return optax.chain(*parts, optax.adam(schedule))
    step_size_schedule = _schedule(
        "step_size_learning_rate",
        step_size_learning_rate,
        decay_steps,
        decay_rate,
        warmup_steps,
    )
    transforms = {
        "networks": optax.adam(schedule),
        "step_sizes": optax.adam(step_size_schedule),
    }
    return optax.chain(*parts, optax.multi_transform(transforms, _step_size_labels))


def _schedule(
    name, learning_rate, decay_steps, decay_rate, warmup_steps
) -> optax.Schedule:
    if callable(learning_rate):
        return learning_rate
    if not learning_rate > 0:
        raise ValueError(f"{name} must be positive, got {learning_rate!r}")
    schedule = optax.constant_schedule(learning_rate)
    if decay_steps:
        schedule = optax.exponential_decay(learning_rate, decay_steps, decay_rate)
    if warmup_steps:
        warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
        schedule = optax.join_schedules([warmup, schedule], [warmup_steps])
    return schedule


def _step_size_labels(params) -> dict:
    """``"step_sizes"`` for the top-level ``log_eps*`` entries, else ``"networks"``."""
    if not isinstance(params, dict):
        raise ValueError(
            "step_size_learning_rate needs L2HMC parameters (a dict with "
            f"'log_eps_x' and 'log_eps_v'), got {type(params).__name__}"
        )

    def fill(tree, label):
        return jax.tree.map(lambda _: label, tree)

    return {
        name: fill(value, "step_sizes" if name.startswith("log_eps") else "networks")
        for name, value in params.items()
    }


def init_train_state(
    params, optimizer: optax.GradientTransformation, positions: Array
) -> TrainState:
    """The train state at step 0."""
    return TrainState(
        jnp.zeros((), jnp.int32), params, optimizer.init(params), jnp.asarray(positions)
    )


def make_train_step(
    sampler: L2HMC,
    optimizer: optax.GradientTransformation,
    loss_config: loss_lib.LossConfig | None = None,
    target_fn: Callable[[Array], Target] | None = None,
    reduce_fn: Callable[[Any], Any] | None = None,
    jit: bool = True,
):
    """Builds ``train_step(state, batch) -> (state, metrics)``.

    Each call draws momenta, makes one proposal per chain, takes a gradient
    step on the loss of that proposal, and moves the chains with the
    Metropolis-Hastings decision on it (made with the parameters before the
    update, so every chain transition is an exact L2HMC step).

    Parameters
    ----------
    sampler
        The `L2HMC` sampler whose parameters are trained.
    optimizer
        For instance `make_optimizer`'s.
    loss_config
        Weights of the loss.
    target_fn
        ``beta -> Target``, to train along a beta schedule (``batch.beta`` is
        traced, so a new beta does not recompile). None keeps the sampler's
        own target and ignores ``batch.beta``.
    reduce_fn
        Applied to the gradients and the metrics before they are used, e.g.
        a mean over devices or processes. Identity by default.
    jit
        Return the step jitted (default) or as a plain function, for callers
        that wrap it themselves (`jax.shard_map`).

    Returns
    -------
    train_step
        ``(TrainState, TrainBatch) -> (TrainState, dict of scalar metrics)``.
    """
    reduce = (lambda tree: tree) if reduce_fn is None else reduce_fn
    gradient_step = make_gradient_step(sampler, loss_config, target_fn)

    def train_step(state: TrainState, batch: TrainBatch):
        grads, positions, metrics = gradient_step(state, batch)
        grads, metrics = reduce((grads, metrics))
        return apply_gradients(optimizer, state, grads, positions), metrics

    return jax.jit(train_step) if jit else train_step


def make_gradient_step(
    sampler: L2HMC,
    loss_config: loss_lib.LossConfig | None = None,
    target_fn: Callable[[Array], Target] | None = None,
):
    """The first half of `make_train_step`'s step, before any reduction.

    Returns
    -------
    gradient_step
        ``(TrainState, TrainBatch) -> (grads, positions, metrics)``: the
        gradients of the loss on this step's chains, the chains after the
        Metropolis-Hastings decision, and the metrics, all unreduced. A
        caller that has to reduce outside of one compiled function (mpi4jax
        with several devices per process) composes this with its reduction
        and `apply_gradients`.
    """
    config = loss_lib.LossConfig() if loss_config is None else loss_config
    grad_fn = jax.value_and_grad(loss_lib.loss_fn, has_aux=True)

    def gradient_step(state: TrainState, batch: TrainBatch):
        current = (
            sampler
            if target_fn is None
            else sampler.replace_target(target_fn(batch.beta))
        )
        key_loss, key_accept = random.split(batch.rng_key)
        chains = current.init(state.positions)
        (loss, aux), grads = grad_fn(state.params, current, key_loss, chains, config)
        new_chains, _, is_accepted = base.metropolis_hastings(
            key_accept,
            current.target,
            aux.log_ratio,
            chains.position,
            aux.proposal_position,
        )
        metrics = _metrics(current, state.positions, new_chains, is_accepted, aux)
        metrics["loss"] = loss
        metrics["eps_x"] = jnp.exp(state.params["log_eps_x"]).mean()
        metrics["eps_v"] = jnp.exp(state.params["log_eps_v"]).mean()
        return grads, new_chains, metrics

    return gradient_step


def apply_gradients(
    optimizer: optax.GradientTransformation, state: TrainState, grads, positions
) -> TrainState:
    """The optimiser step: ``state`` with updated parameters and new chains."""
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, opt_state, positions)


def _metrics(sampler, old, new, is_accepted, aux) -> dict:
    metrics = {
        "acceptance": aux.acceptance_rate.mean(),
        "accepted_fraction": is_accepted.mean(),
        "distance": (aux.acceptance_rate * aux.distance).mean(),
    }
    obs_old = sampler.target.observables_fn(old)
    obs_new = sampler.target.observables_fn(new)
    if "charge" in obs_new:
        metrics["dq_int"] = jnp.abs(obs_new["charge"] - obs_old["charge"]).mean()
    if "charge_sin" in obs_new:
        dq_sin = obs_new["charge_sin"] - obs_old["charge_sin"]
        metrics["dq_sin"] = jnp.abs(dq_sin).mean()
    if "plaquette" in obs_new:
        metrics["plaquette"] = obs_new["plaquette"].mean()
    return metrics


def beta_schedule(
    num_steps: int, beta_init: float, beta_final: float, num_eras: int | None = None
) -> np.ndarray:
    """The beta of each train step, from ``beta_init`` to ``beta_final``.

    With ``num_eras`` the steps are split into that many equal eras (the last
    takes any remainder) of constant beta, linearly spaced from ``beta_init``
    to ``beta_final``; without, beta rises linearly step by step.
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps!r}")
    if not (beta_init > 0 and beta_final > 0):
        raise ValueError(
            f"beta_init and beta_final must be positive, got {beta_init!r}, "
            f"{beta_final!r}"
        )
    if num_eras is None:
        return np.linspace(beta_init, beta_final, num_steps)
    if not 1 <= int(num_eras) <= num_steps:
        raise ValueError(f"num_eras must be in [1, num_steps], got {num_eras!r}")
    betas = np.linspace(beta_init, beta_final, num_eras)
    era = np.minimum(np.arange(num_steps) // (num_steps // num_eras), num_eras - 1)
    return betas[era]


def era_starts(betas: np.ndarray) -> np.ndarray:
    """Indices of the steps where beta changes (and 0): where eras start."""
    betas = np.asarray(betas)
    return np.flatnonzero(np.r_[True, betas[1:] != betas[:-1]])


def make_hmc_warmup(
    target_fn: Callable[[Array], Target], num_steps: int, num_integration_steps: int
):
    """Builds a jitted ``warmup(rng_key, positions, beta, step_size) -> positions``.

    It runs ``num_steps`` HMC steps at ``beta``, to equilibrate the training
    chains at the start of a beta era; ``beta`` and ``step_size`` are traced,
    so every era reuses one compiled function. ``rng_key`` is one key, or one
    key per chain (each chain then draws from its own, whatever the split of
    the chains over devices and processes).
    """
    num_steps = int(num_steps)

    @jax.jit
    def warmup(rng_key, positions, beta, step_size):
        target = target_fn(beta)
        kernel = hmc_kernel.build_kernel(target, num_integration_steps)

        def one(state, key):
            return kernel(key, state, step_size)[0], None

        state = hmc_kernel.init(positions, target)
        if jnp.ndim(rng_key):
            # Per chain: (num_steps, num_chains), so the scan gives each step
            # one key per chain.
            keys = jax.vmap(lambda k: jax.random.split(k, num_steps), out_axes=1)(
                rng_key
            )
        else:
            keys = jax.random.split(rng_key, num_steps)
        return jax.lax.scan(one, state, keys)[0].position

    return warmup
