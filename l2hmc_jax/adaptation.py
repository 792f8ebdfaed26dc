"""Step-size adaptation for the HMC baseline: dual averaging.

The step size is tuned so that the acceptance probability, averaged over
chains, reaches a target (0.8 by default) at a fixed number of leapfrog
steps, following the dual averaging scheme of Nesterov (2009) as used for
HMC by Hoffman and Gelman (2014).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from l2hmc_jax.kernels import hmc as hmc_kernel
from l2hmc_jax.targets.base import Target

Array = jax.Array


class DualAveragingState(NamedTuple):
    """The dual averaging iterate.

    Attributes
    ----------
    log_step_size
        The step size tried at the next step.
    log_step_size_avg
        The weighted average of past iterates: the final answer.
    step
        Number of updates so far.
    avg_error
        Running average of ``target_acceptance - acceptance``.
    mu
        The value the iterates are shrunk towards, ``log(10 * eps_0)``.
    """

    log_step_size: Array
    log_step_size_avg: Array
    step: Array
    avg_error: Array
    mu: Array


def dual_averaging_init(initial_step_size) -> DualAveragingState:
    """Starts dual averaging at ``initial_step_size``."""
    log_eps = jnp.log(jnp.asarray(initial_step_size, jnp.float32))
    zero = jnp.zeros((), jnp.float32)
    return DualAveragingState(log_eps, log_eps, zero, zero, jnp.log(10.0) + log_eps)


def dual_averaging_update(
    state: DualAveragingState,
    acceptance,
    target_acceptance: float = 0.8,
    t0: float = 10.0,
    gamma: float = 0.05,
    kappa: float = 0.75,
) -> DualAveragingState:
    """One dual averaging update from the acceptance of the last step.

    ``H_t = (1 - 1/(t + t0)) H_(t-1) + (delta - a_t) / (t + t0)``,
    ``log eps_t = mu - sqrt(t) H_t / gamma`` and
    ``log eps_avg_t = t^-kappa log eps_t + (1 - t^-kappa) log eps_avg_(t-1)``.
    """
    t = state.step + 1
    w = 1.0 / (t + t0)
    avg_error = (1 - w) * state.avg_error + w * (target_acceptance - acceptance)
    log_eps = state.mu - jnp.sqrt(t) / gamma * avg_error
    eta = t**-kappa
    log_eps_avg = eta * log_eps + (1 - eta) * state.log_step_size_avg
    return DualAveragingState(log_eps, log_eps_avg, t, avg_error, state.mu)


class AdaptationResult(NamedTuple):
    """What `find_step_size` returns.

    Attributes
    ----------
    step_size
        The adapted step size (a Python float).
    state
        The HMC state after the adaptation steps, ready to sample from.
    acceptance_rate
        Acceptance rate per adaptation step, averaged over chains.
    """

    step_size: float
    state: hmc_kernel.HMCState
    acceptance_rate: Array


def find_step_size(
    rng_key: Array,
    target: Target,
    positions: Array,
    num_integration_steps: int,
    num_adaptation_steps: int = 500,
    *,
    initial_step_size: float = 0.1,
    target_acceptance: float = 0.8,
) -> AdaptationResult:
    """Tunes the HMC step size by dual averaging, sharing it across chains.

    Parameters
    ----------
    rng_key
        A `jax.random.key`.
    target
        The `Target` to sample.
    positions
        Initial positions, one chain or a leading chain axis. The chains also
        thermalise during adaptation.
    num_integration_steps
        Leapfrog steps per trajectory, held fixed.
    num_adaptation_steps
        HMC steps to run while adapting.
    initial_step_size
        Where dual averaging starts.
    target_acceptance
        The acceptance probability aimed for, in (0, 1).

    Returns
    -------
    AdaptationResult
    """
    if not 0 < target_acceptance < 1:
        raise ValueError(
            f"target_acceptance must be in (0, 1), got {target_acceptance!r}"
        )
    if not initial_step_size > 0:
        raise ValueError(
            f"initial_step_size must be positive, got {initial_step_size!r}"
        )
    if int(num_adaptation_steps) < 1:
        raise ValueError(
            f"num_adaptation_steps must be positive, got {num_adaptation_steps!r}"
        )
    state = hmc_kernel.init(jnp.asarray(positions), target)
    keys = jax.random.split(rng_key, int(num_adaptation_steps))
    da_state, state, acceptance = _adapt(
        target,
        int(num_integration_steps),
        float(target_acceptance),
        keys,
        state,
        dual_averaging_init(initial_step_size),
    )
    step_size = float(jnp.exp(da_state.log_step_size_avg))
    return AdaptationResult(step_size, state, acceptance)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _adapt(target, num_integration_steps, target_acceptance, keys, state, da_state):
    kernel = hmc_kernel.build_kernel(target, num_integration_steps)

    def one_step(carry, key):
        state, da_state = carry
        step_size = jnp.exp(da_state.log_step_size)
        state, info = kernel(key, state, step_size)
        acceptance = info.acceptance_rate.mean().astype(jnp.float32)
        da_state = dual_averaging_update(da_state, acceptance, target_acceptance)
        return (state, da_state), acceptance

    (state, da_state), acceptance = jax.lax.scan(one_step, (state, da_state), keys)
    return da_state, state, acceptance
