"""2D U(1) lattice gauge theory with the Wilson action.

Links are angles of shape ``[..., 2, L0, L1]``: ``x[..., 0, :, :]`` point
along axis -2 (direction 0), ``x[..., 1, :, :]`` along axis -1 (direction 1),
with periodic boundaries. Any leading batch shape is allowed; every function
maps over it.

The plaquette angle is ``P(n) = x0(n) + x1(n + e0) - x0(n + e1) - x1(n)``
and the action ``S = beta * sum_n (1 - cos P(n))``.
"""

import math

import jax
import jax.numpy as jnp

from l2hmc_jax.targets import base

Array = jax.Array

_SITE_AXES = (-2, -1)

wrap = base.wrap


def _check_links(x: Array) -> None:
    if x.ndim < 3 or x.shape[-3] != 2 or x.shape[-2] < 2 or x.shape[-1] < 2:
        raise ValueError(
            f"links must have shape [..., 2, L0, L1] with L0, L1 >= 2, got {x.shape}"
        )


def check_size(size) -> tuple[int, int]:
    """Returns ``size`` as a pair of ints, or raises a `ValueError` naming it."""
    try:
        l0, l1 = (int(n) for n in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a pair (L0, L1), got {size!r}") from None
    if (l0, l1) != tuple(size) or l0 < 2 or l1 < 2:
        raise ValueError(f"size must be a pair of integers >= 2, got {size!r}")
    return l0, l1


def check_beta(beta) -> None:
    """Raises a `ValueError` naming ``beta`` unless it is finite and positive.

    A traced ``beta`` (inside `jax.jit`) cannot be checked and is let through.
    """
    if isinstance(beta, jax.core.Tracer):
        return
    value = float(beta)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"beta must be finite and positive, got {beta!r}")


def plaquettes(x: Array) -> Array:
    """Plaquette angles ``P(n)`` (not wrapped), shape ``[..., L0, L1]``."""
    _check_links(x)
    x0, x1 = x[..., 0, :, :], x[..., 1, :, :]
    return x0 + jnp.roll(x1, -1, axis=-2) - jnp.roll(x0, -1, axis=-1) - x1


def action(x: Array, beta) -> Array:
    """Wilson action ``beta * sum_n (1 - cos P(n))``, shape ``[...]``."""
    check_beta(beta)
    beta = jnp.asarray(beta, x.dtype)
    return beta * (1 - jnp.cos(plaquettes(x))).sum(axis=_SITE_AXES)


def force(x: Array, beta) -> Array:
    """Gradient of the action with respect to the links, shape of ``x``.

    ``dS/dx0(n) = beta [sin P(n) - sin P(n - e1)]`` and
    ``dS/dx1(n) = beta [sin P(n - e0) - sin P(n)]``.
    """
    check_beta(beta)
    beta = jnp.asarray(beta, x.dtype)
    sin_p = _materialised(jnp.sin(plaquettes(x)))
    f0 = sin_p - jnp.roll(sin_p, 1, axis=-1)
    f1 = jnp.roll(sin_p, 1, axis=-2) - sin_p
    return beta * jnp.stack([f0, f1], axis=-3)


def _materialised(y: Array) -> Array:
    """``y``, computed once into memory before its consumers read it.

    Each component of the force reads ``sin P`` at two sites. Left alone,
    XLA fuses the sine into the fused rolls that follow, whose loops then
    evaluate it again for every element they read: four sines per site and
    force evaluation instead of one, which made the force about twice as
    slow on CPU. A reduction ends a fusion, so summing ``y`` with zeros over
    a new trailing axis of length two makes XLA write ``y`` once (over a
    leading axis the reduction itself cost about what it saved); an
    optimisation barrier does not, as XLA's CPU pipeline removes it before
    fusing. Adding zero changes no value.
    """
    return jnp.stack([y, jnp.zeros_like(y)], axis=-1).sum(axis=-1)


def charge(x: Array) -> Array:
    """Integer topological charge ``sum_n wrap(P(n)) / 2pi``, shape ``[...]``.

    The sum of wrapped plaquette angles is a multiple of 2pi up to round-off;
    the result is rounded so that it is an exact integer (in ``x.dtype``).
    """
    q = wrap(plaquettes(x)).sum(axis=_SITE_AXES) / (2 * jnp.pi)
    return jnp.round(q)


def charge_sin(x: Array) -> Array:
    """Sine charge ``sum_n sin P(n) / 2pi``, shape ``[...]``."""
    return jnp.sin(plaquettes(x)).sum(axis=_SITE_AXES) / (2 * jnp.pi)


def mean_plaquette(x: Array) -> Array:
    """``cos P`` averaged over the sites of each configuration, shape ``[...]``."""
    return jnp.cos(plaquettes(x)).mean(axis=_SITE_AXES)


def observables(x: Array) -> dict[str, Array]:
    """The per-configuration observables that `sample` records by default."""
    p = plaquettes(x)
    sin_p = jnp.sin(p)
    two_pi = 2 * jnp.pi
    return {
        "plaquette": jnp.cos(p).mean(axis=_SITE_AXES),
        "charge": jnp.round(wrap(p).sum(axis=_SITE_AXES) / two_pi),
        "charge_sin": sin_p.sum(axis=_SITE_AXES) / two_pi,
    }


def charge_distance(x: Array, y: Array) -> Array:
    """``(Q_sin(y) - Q_sin(x))^2``: the distance the L2HMC loss rewards."""
    return (charge_sin(y) - charge_sin(x)) ** 2


def random_links(rng_key: Array, num_chains: int, size, dtype=None) -> Array:
    """Uniformly random (hot start) links of shape ``(num_chains, 2, L0, L1)``.

    Parameters
    ----------
    rng_key
        A `jax.random.key`.
    num_chains
        Number of independent configurations (the leading axis).
    size
        ``(L0, L1)``.
    dtype
        Floating dtype of the links; defaults to JAX's default float.
    """
    l0, l1 = check_size(size)
    if int(num_chains) < 1:
        raise ValueError(f"num_chains must be at least 1, got {num_chains!r}")
    dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)
    shape = (int(num_chains), 2, l0, l1)
    return jax.random.uniform(
        rng_key, shape, dtype=dtype, minval=-jnp.pi, maxval=jnp.pi
    )


def target(beta, size) -> base.Target:
    """The U(1) Wilson-action target on an ``L0 x L1`` periodic lattice.

    Parameters
    ----------
    beta
        Inverse coupling, positive. May be a traced value (for a beta
        schedule inside `jax.jit`); it is then not validated.
    size
        ``(L0, L1)``, each at least 2.

    Returns
    -------
    Target
        On the circle manifold; records ``plaquette`` (mean cos P),
        ``charge`` and ``charge_sin``; the loss distance is the squared
        change of the sine charge.
    """
    check_beta(beta)
    l0, l1 = check_size(size)
    params = (("size", (l0, l1)),)
    if not isinstance(beta, jax.core.Tracer):
        params = (("beta", float(beta)),) + params
    return base.make_target(
        lambda x: -action(x, beta),
        (2, l0, l1),
        manifold=base.CIRCLE,
        logdensity_grad_fn=lambda x: -force(x, beta),
        observables_fn=observables,
        distance_fn=charge_distance,
        params=params,
    )
