"""The `Target` every sampler in the library is built on."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

EUCLIDEAN = "euclidean"
CIRCLE = "circle"
MANIFOLDS = (EUCLIDEAN, CIRCLE)


def wrap(x: Array) -> Array:
    """Maps angles into [-pi, pi)."""
    return jnp.remainder(x + jnp.pi, 2 * jnp.pi) - jnp.pi


class Target(NamedTuple):
    """A log-density with what the samplers and the loss need to know of it.

    Every function acts on positions of shape ``batch_shape + event_shape``
    and maps the batch axes over independent configurations (chains), so one
    call handles one chain or a leading chain axis alike.

    Attributes
    ----------
    logdensity_fn
        ``x -> log p(x)`` up to a constant, of shape ``batch_shape``.
    logdensity_grad_fn
        ``x -> d log p / dx``, same shape as ``x``. Lattice targets give the
        analytic force here; `make_target` falls back to `jax.grad`.
    event_shape
        The shape of one configuration.
    manifold
        ``"euclidean"`` or ``"circle"`` (angles in [-pi, pi)); it picks the
        x-update of the samplers.
    observables_fn
        ``x -> dict[str, Array]`` of per-configuration scalars that `sample`
        records by default.
    distance_fn
        ``(x, y) -> Array`` of shape ``batch_shape``: the distance between a
        configuration and its proposal that the L2HMC loss rewards.
    params
        Static description of the target (for instance ``beta`` and
        ``size``), as a tuple of ``(name, value)`` pairs so that a `Target`
        stays hashable and can be a static argument of `jax.jit`.
    """

    logdensity_fn: Callable[[Array], Array]
    logdensity_grad_fn: Callable[[Array], Array]
    event_shape: tuple[int, ...]
    manifold: str
    observables_fn: Callable[[Array], dict[str, Array]]
    distance_fn: Callable[[Array, Array], Array]
    params: tuple[tuple[str, Any], ...] = ()

    def batch_shape(self, x: Array) -> tuple[int, ...]:
        """The leading (chain) axes of ``x``; raises if its event shape is wrong."""
        n = len(self.event_shape)
        if x.ndim < n or tuple(x.shape[x.ndim - n :]) != tuple(self.event_shape):
            raise ValueError(
                f"positions of shape {x.shape} do not end in the target's event "
                f"shape {self.event_shape}"
            )
        return tuple(x.shape[: x.ndim - n])


def _squared_distance(event_ndim: int) -> Callable[[Array, Array], Array]:
    def distance_fn(x, y):
        axes = tuple(range(-event_ndim, 0))
        return ((y - x) ** 2).sum(axis=axes)

    return distance_fn


def make_target(
    logdensity_fn: Callable[[Array], Array],
    event_shape: tuple[int, ...],
    *,
    manifold: str = EUCLIDEAN,
    logdensity_grad_fn: Callable[[Array], Array] | None = None,
    observables_fn: Callable[[Array], dict[str, Array]] | None = None,
    distance_fn: Callable[[Array, Array], Array] | None = None,
    params: tuple[tuple[str, Any], ...] = (),
) -> Target:
    """Builds a `Target` from a batched log-density, with sensible defaults.

    Parameters
    ----------
    logdensity_fn
        ``x -> log p(x)``, mapping the leading axes of ``x`` over
        independent configurations.
    event_shape
        The shape of one configuration.
    manifold
        ``"euclidean"`` (default) or ``"circle"``.
    logdensity_grad_fn
        Defaults to ``jax.grad`` of the summed log-density, which is the
        per-configuration gradient because configurations are independent.
    observables_fn
        Defaults to the position itself for targets of at most 8 dimensions
        (``x0``, ``x1``, ...), and to nothing otherwise.
    distance_fn
        Defaults to the squared euclidean distance over the event axes.
    params
        Static ``(name, value)`` pairs describing the target.

    Returns
    -------
    Target
    """
    if manifold not in MANIFOLDS:
        raise ValueError(f"manifold must be one of {MANIFOLDS}, got {manifold!r}")
    event_shape = tuple(int(n) for n in event_shape)
    event_ndim = len(event_shape)
    if logdensity_grad_fn is None:
        logdensity_grad_fn = jax.grad(lambda x: logdensity_fn(x).sum())
    if observables_fn is None:
        observables_fn = _default_observables(event_shape)
    if distance_fn is None:
        distance_fn = _squared_distance(event_ndim)
    return Target(
        logdensity_fn=logdensity_fn,
        logdensity_grad_fn=logdensity_grad_fn,
        event_shape=event_shape,
        manifold=manifold,
        observables_fn=observables_fn,
        distance_fn=distance_fn,
        params=tuple(params),
    )


def _default_observables(event_shape):
    small = len(event_shape) == 1 and event_shape[0] <= 8

    def observables_fn(x):
        if not small:
            return {}
        return {f"x{i}": x[..., i] for i in range(event_shape[0])}

    return observables_fn
