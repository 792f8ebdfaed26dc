"""Hamiltonian Monte Carlo with a leapfrog integrator."""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from l2hmc_jax.kernels import base, random
from l2hmc_jax.targets.base import CIRCLE, Target, wrap

Array = jax.Array


class HMCState(NamedTuple):
    """What carries over from one HMC step to the next."""

    position: Array
    logdensity: Array
    logdensity_grad: Array


class HMCInfo(NamedTuple):
    """Per-step diagnostics, one entry per chain.

    Attributes
    ----------
    momentum
        The momentum drawn at the start of the trajectory.
    acceptance_rate
        The Metropolis-Hastings acceptance probability of the proposal.
    is_accepted
        Whether the proposal was accepted.
    energy
        Total energy ``H = -log p + |v|^2 / 2`` of the proposal.
    energy_change
        ``H(proposal) - H(start)``; zero for an exact integrator.
    num_integration_steps
        Leapfrog steps in the trajectory (one force evaluation each).
    """

    momentum: Array
    acceptance_rate: Array
    is_accepted: Array
    energy: Array
    energy_change: Array
    num_integration_steps: int


def init(position: Array, target: Target) -> HMCState:
    """The HMC state at ``position`` (one chain or a leading chain axis)."""
    position = jnp.asarray(position)
    target.batch_shape(position)
    return HMCState(
        position, target.logdensity_fn(position), target.logdensity_grad_fn(position)
    )


def leapfrog(
    target: Target,
    position: Array,
    momentum: Array,
    logdensity_grad: Array,
    step_size,
    num_integration_steps: int,
) -> tuple[Array, Array, Array]:
    """Velocity-Verlet integration of ``dx/dt = v``, ``dv/dt = grad log p``.

    The gradient at the end of one step is the one the next step starts
    with, so ``num_integration_steps`` steps cost that many gradient
    evaluations; the two half kicks between consecutive drifts are taken as
    one full kick, which saves a pass over the momenta per step. On the
    circle the positions are wrapped into [-pi, pi) at the end; the density
    is periodic, so wrapping changes nothing else.

    Returns
    -------
    position, momentum, logdensity_grad
        At the end of the trajectory.
    """
    step_size = jnp.asarray(step_size, position.dtype)
    half = 0.5 * step_size

    def drift_and_force(x, v):
        x = x + step_size * v
        return x, target.logdensity_grad_fn(x)

    def body(_, carry):
        x, v, _ = carry
        x, g = drift_and_force(x, v)
        return x, v + step_size * g, g

    v = momentum + half * logdensity_grad
    x, v, _ = jax.lax.fori_loop(
        0, num_integration_steps - 1, body, (position, v, logdensity_grad)
    )
    x, g = drift_and_force(x, v)
    v = v + half * g
    if target.manifold == CIRCLE:
        x = wrap(x)
    return x, v, g


def build_kernel(target: Target, num_integration_steps: int):
    """The HMC transition with the step size as a per-call argument.

    Parameters
    ----------
    target
        The `Target` to sample.
    num_integration_steps
        Leapfrog steps per trajectory.

    Returns
    -------
    kernel
        ``kernel(rng_key, state, step_size) -> (HMCState, HMCInfo)``.
    """
    num_integration_steps = _check_num_steps(num_integration_steps)

    def kernel(rng_key, state: HMCState, step_size):
        key_momentum, key_accept = random.split(rng_key)
        x = state.position
        v = random.draw(
            lambda key, s: jax.random.normal(key, s, x.dtype),
            key_momentum,
            x.shape,
            target.batch_shape(x),
        )

        x_new, v_new, g_new = leapfrog(
            target, x, v, state.logdensity_grad, step_size, num_integration_steps
        )
        logdensity_new = target.logdensity_fn(x_new)

        energy = -state.logdensity + base.kinetic_energy(target, v)
        energy_new = -logdensity_new + base.kinetic_energy(target, v_new)
        proposal = HMCState(x_new, logdensity_new, g_new)
        new_state, p_accept, is_accepted = base.metropolis_hastings(
            key_accept, target, energy - energy_new, state, proposal
        )
        info = HMCInfo(
            v,
            p_accept,
            is_accepted,
            energy_new,
            energy_new - energy,
            num_integration_steps,
        )
        return new_state, info

    return kernel


def hmc(target: Target, step_size, num_steps: int) -> base.SamplingAlgorithm:
    """HMC with a fixed step size and number of leapfrog steps.

    Parameters
    ----------
    target
        The `Target` to sample, for instance ``l2hmc_jax.targets.u1.target``.
    step_size
        Leapfrog step size, positive.
    num_steps
        Leapfrog steps per trajectory (force evaluations per step).

    Returns
    -------
    SamplingAlgorithm
        ``init(positions) -> HMCState`` and
        ``step(rng_key, state) -> (HMCState, HMCInfo)``; works on one chain
        or a leading chain axis.

    Examples
    --------
    >>> import jax
    >>> from l2hmc_jax import hmc, sample
    >>> from l2hmc_jax.targets import u1
    >>> target = u1.target(beta=2.0, size=(8, 8))
    >>> links = u1.random_links(jax.random.key(0), 4, (8, 8))
    >>> algorithm = hmc(target, step_size=0.2, num_steps=5)
    >>> state, trace = sample(jax.random.key(1), algorithm, links, 10)
    >>> trace["plaquette"].shape
    (10, 4)
    """
    if not isinstance(step_size, jax.core.Tracer):
        value = float(step_size)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"step_size must be finite and positive, got {step_size!r}"
            )
    kernel = build_kernel(target, num_steps)

    def init_fn(position):
        return init(position, target)

    def step_fn(rng_key, state):
        return kernel(rng_key, state, step_size)

    return base.SamplingAlgorithm(init_fn, step_fn, target)


def _check_num_steps(num_steps) -> int:
    if int(num_steps) != num_steps or int(num_steps) < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return int(num_steps)
