"""The ESJD-type loss of L2HMC, computed on the proposal.

Per chain ``delta = A(x'|x) * d(x, x')``, with ``A`` the acceptance
probability and ``d`` the target's distance (the squared change of the sine
charge on U(1), optionally plus a plaquette term; the squared euclidean
distance elsewhere). The loss

    mean(lambda^2 / (delta + 1e-4) - (delta + 1e-4) / lambda^2)

rewards large expected jumps and punishes chains that do not move at all
much more than it rewards chains that move a lot.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from l2hmc_jax.kernels import random
from l2hmc_jax.kernels.l2hmc import L2HMC, L2HMCState
from l2hmc_jax.targets import u1
from l2hmc_jax.targets.base import CIRCLE

Array = jax.Array

DELTA_FLOOR = 1e-4


def esjd(delta: Array, scale: float = 1.0) -> Array:
    """``mean(scale^2 / (delta + 1e-4) - (delta + 1e-4) / scale^2)``."""
    delta = delta + DELTA_FLOOR
    scale2 = scale**2
    return (scale2 / delta - delta / scale2).mean()


def plaquette_distance(x: Array, y: Array) -> Array:
    """``sum_n 2 (1 - cos(P'(n) - P(n)))`` between two U(1) configurations."""
    dp = u1.plaquettes(y) - u1.plaquettes(x)
    return 2 * (1 - jnp.cos(dp)).sum(axis=(-2, -1))


class LossConfig(NamedTuple):
    """Weights of the loss.

    Attributes
    ----------
    scale
        ``lambda``, the length scale of the distance. Where ``delta << lambda``
        the ``lambda^2 / delta`` term dominates and the gradient is carried by
        the few chains that barely moved, which makes it noisy: on 8 x 8 U(1)
        at beta = 3 with 128 chains, gradients of independent batches have a
        cosine similarity of about 0.04 at ``lambda = 1`` and 0.45 at
        ``lambda = 0.01``, where the loss is close to ``-mean(delta) /
        lambda^2``. Typical charge distances are 0.01 to 0.1.
    charge_weight
        Weight of the target's own distance (the sine charge on U(1)).
    plaquette_weight
        Weight of `plaquette_distance` (U(1) only; 0 turns it off).
    burn_in_weight
        Weight of the same loss on proposals from fresh draws of the simple
        initial distribution (uniform links, or standard normal); 0 turns it
        off.
    """

    scale: float = 1.0
    charge_weight: float = 1.0
    plaquette_weight: float = 0.0
    burn_in_weight: float = 0.0


def distance(sampler: L2HMC, config: LossConfig, x: Array, y: Array) -> Array:
    """The weighted distance between configurations and their proposals."""
    d = config.charge_weight * sampler.target.distance_fn(x, y)
    if config.plaquette_weight:
        d = d + config.plaquette_weight * plaquette_distance(x, y)
    return d


class LossAux(NamedTuple):
    """What the loss computed on the way, for the train step and metrics."""

    proposal_position: Array
    proposal_logdensity: Array
    log_ratio: Array
    acceptance_rate: Array
    distance: Array
    charge_distance: Array


def loss_fn(
    params: dict,
    sampler: L2HMC,
    rng_key: Array,
    state: L2HMCState,
    config: LossConfig | None = None,
) -> tuple[Array, LossAux]:
    """The L2HMC loss on one proposal from ``state``, and what it computed.

    Gradients flow through the proposal and the acceptance probability into
    ``params``; ``state`` is treated as data.
    """
    config = LossConfig() if config is None else config
    state = jax.lax.stop_gradient(state)
    key_chain, key_burn_in = random.split(rng_key)
    proposal = sampler.propose(key_chain, state, params)
    x, x_new = state.position, proposal.position
    d = distance(sampler, config, x, x_new)
    loss = esjd(proposal.acceptance_rate * d, config.scale)
    if config.burn_in_weight:
        loss = loss + config.burn_in_weight * _burn_in_loss(
            params, sampler, key_burn_in, x, config
        )
    aux = LossAux(
        x_new,
        proposal.logdensity,
        proposal.log_ratio,
        proposal.acceptance_rate,
        d,
        sampler.target.distance_fn(x, x_new),
    )
    return loss, aux


def _burn_in_loss(params, sampler, rng_key, like, config):
    key_x, key_step = random.split(rng_key)
    if sampler.target.manifold == CIRCLE:

        def sample_fn(key, shape):
            return jax.random.uniform(key, shape, like.dtype, -jnp.pi, jnp.pi)
    else:

        def sample_fn(key, shape):
            return jax.random.normal(key, shape, like.dtype)

    batch_shape = sampler.target.batch_shape(like)
    x = random.draw(sample_fn, key_x, like.shape, batch_shape)
    state = sampler.init(x)
    proposal = sampler.propose(key_step, state, params)
    d = distance(sampler, config, x, proposal.position)
    return esjd(proposal.acceptance_rate * d, config.scale)
