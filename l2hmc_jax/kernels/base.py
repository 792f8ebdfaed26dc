"""What every kernel of the library returns, and the Metropolis-Hastings test."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from l2hmc_jax.kernels import random
from l2hmc_jax.targets.base import Target

Array = jax.Array


class SamplingAlgorithm(NamedTuple):
    """A kernel closed over its parameters, BlackJAX style.

    Attributes
    ----------
    init
        ``positions -> state``.
    step
        ``(rng_key, state) -> (state, info)``.
    target
        The `Target` the algorithm samples.
    """

    init: Callable[[Array], Any]
    step: Callable[..., tuple[Any, Any]]
    target: Target


def event_sum(target: Target, x: Array) -> Array:
    """Sums ``x`` over the target's event axes, leaving the chain axes."""
    n = len(target.event_shape)
    return x.sum(axis=tuple(range(x.ndim - n, x.ndim)))


def kinetic_energy(target: Target, momentum: Array) -> Array:
    """``|v|^2 / 2`` per configuration."""
    return 0.5 * event_sum(target, momentum**2)


def acceptance_probability(log_ratio: Array) -> Array:
    """``min(1, exp(log_ratio))``, and 0 where ``log_ratio`` is not finite.

    A proposal whose energy overflowed or became nan is rejected, so a bad
    proposal never propagates into the chain.
    """
    finite = jnp.isfinite(log_ratio)
    safe = jnp.where(finite, log_ratio, -jnp.inf)
    return jnp.where(finite, jnp.exp(jnp.minimum(safe, 0.0)), 0.0)


def metropolis_hastings(
    rng_key: Array, target: Target, log_ratio: Array, current, proposal
) -> tuple[Any, Array, Array]:
    """Accepts each chain's proposal with probability `acceptance_probability`.

    Parameters
    ----------
    rng_key
        A `jax.random.key`, or one per chain.
    target
        Gives the event shape, to broadcast the per-chain decision.
    log_ratio
        ``log`` of the acceptance ratio per chain, shape ``batch_shape``.
    current, proposal
        Pytrees of the same structure whose leaves have a leading
        ``batch_shape`` (positions and anything computed from them).

    Returns
    -------
    state, acceptance_rate, is_accepted
    """
    p_accept = acceptance_probability(log_ratio)
    shape = p_accept.shape
    u = random.draw(
        lambda key, s: jax.random.uniform(key, s, p_accept.dtype), rng_key, shape, shape
    )
    is_accepted = u < p_accept
    state = jax.tree.map(select_chains(is_accepted), proposal, current)
    return state, p_accept, is_accepted


def select_chains(condition: Array):
    """``(a, b) -> where(condition, a, b)`` with ``condition`` per chain.

    ``condition`` has the batch shape; the arrays may have trailing event
    axes, over which it is broadcast.
    """

    def select(a, b):
        mask = condition.reshape(condition.shape + (1,) * (a.ndim - condition.ndim))
        return jnp.where(mask, a, b)

    return select
