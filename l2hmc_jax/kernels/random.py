"""Random draws from one key for all chains, or from one key per chain.

Every kernel accepts either a single `jax.random.key` or an array of keys
with the chains' batch shape. With one key per chain, a chain's random
numbers depend on its own key only, not on how many other chains share the
call; that is what lets a run split its chains over devices and processes
(each rank holding a slice of one global array of keys) and still give the
same answer as a run on one device.

Raw ``uint32`` key data (``jax.random.PRNGKey`` or `jax.random.key_data`)
is accepted and wrapped, so keys can cross process boundaries as plain
arrays.
"""

from collections.abc import Callable

import jax

Array = jax.Array


def as_key(rng_key: Array) -> Array:
    """``rng_key`` as a typed key array (wrapping raw ``uint32`` key data)."""
    if not jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        rng_key = jax.random.wrap_key_data(rng_key)
    return rng_key


def split(rng_key: Array, num: int = 2) -> tuple[Array, ...]:
    """Splits one key, or each of an array of keys, into ``num`` keys."""
    rng_key = as_key(rng_key)
    if rng_key.ndim == 0:
        return tuple(jax.random.split(rng_key, num))
    keys = jax.vmap(lambda key: jax.random.split(key, num))(rng_key.reshape(-1))
    return tuple(keys[:, i].reshape(rng_key.shape) for i in range(num))


def draw(
    sample_fn: Callable[[Array, tuple[int, ...]], Array],
    rng_key: Array,
    shape: tuple[int, ...],
    batch_shape: tuple[int, ...],
) -> Array:
    """``sample_fn(key, shape)`` with one key, or chain by chain.

    Parameters
    ----------
    sample_fn
        ``(key, shape) -> Array``, e.g. ``lambda k, s: jax.random.normal(k, s)``.
    rng_key
        One key, or keys of shape ``batch_shape``.
    shape
        ``batch_shape + event_shape``.
    batch_shape
        The chain axes of ``shape``.
    """
    rng_key = as_key(rng_key)
    if rng_key.ndim == 0:
        return sample_fn(rng_key, shape)
    if rng_key.shape != tuple(batch_shape):
        raise ValueError(
            f"per-chain keys of shape {rng_key.shape} do not match the chains' "
            f"batch shape {tuple(batch_shape)}"
        )
    event_shape = tuple(shape[len(batch_shape) :])
    draws = jax.vmap(lambda key: sample_fn(key, event_shape))(rng_key.reshape(-1))
    return draws.reshape(shape)
