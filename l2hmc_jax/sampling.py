"""`sample`: run a kernel for many steps in one compiled `lax.scan`."""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from l2hmc_jax.kernels import random

Array = jax.Array

# With progress on, the chain runs in about this many compiled chunks: enough
# for a bar that moves, few enough that the host round trips cost nothing.
_PROGRESS_CHUNKS = 50


def sample(
    rng_key: Array,
    algorithm,
    positions: Array,
    num_steps: int,
    *,
    params=None,
    thin: int = 1,
    observables: Callable[[Array], dict[str, Array]] | None = None,
    progress: bool = False,
):
    """Runs ``algorithm`` for ``num_steps`` steps and records observables.

    Parameters
    ----------
    rng_key
        A `jax.random.key`; step ``i`` uses the ``i``-th of
        ``jax.random.split(rng_key, num_steps)``, so the result does not depend
        on ``thin``'s bookkeeping or on ``progress``. An array of keys, one
        per chain, makes each chain's draws independent of the others (and of
        how the chains are split over devices or processes); chain ``c`` then
        uses the ``i``-th of ``jax.random.split(rng_key[c], num_steps)``.
    algorithm
        An object with ``init``, ``step`` and ``target``, such as
        `l2hmc_jax.hmc` or `l2hmc_jax.l2hmc` returns.
    positions
        Initial positions: one configuration or a leading chain axis. A state
        returned by an earlier call (a NamedTuple whose first field is
        ``position``) continues that chain instead.
    num_steps
        Number of transitions; a multiple of ``thin``.
    params
        Passed as the third argument of ``algorithm.step`` (network
        parameters of L2HMC); leave as None for kernels that take none.
    thin
        Record every ``thin``-th state only.
    observables
        ``x -> dict[str, Array]`` of per-configuration values to record;
        defaults to ``algorithm.target.observables_fn``. Full configurations
        are stored only if this asks for them, e.g.
        ``observables=lambda x: {"links": x}``.
    progress
        Show a tqdm bar that advances while the chain runs. The scan then
        runs in chunks; with ``progress=False`` it is one compiled call.

    Returns
    -------
    final_state
        The algorithm's state after the last step.
    trace
        A dict of arrays of shape ``(num_steps // thin,) + batch_shape``: the
        observables of each recorded state, and that step's
        ``acceptance_rate`` and ``is_accepted``.
    """
    num_steps = _positive_int("num_steps", num_steps)
    thin = _positive_int("thin", thin)
    if num_steps % thin:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of thin ({thin})")
    if observables is None:
        observables = algorithm.target.observables_fn
    if _is_state(positions):
        state = positions
    else:
        positions = jnp.asarray(positions)
        algorithm.target.batch_shape(positions)
        state = _init(algorithm, positions)

    num_kept = num_steps // thin
    keys = _step_keys(rng_key, num_steps)
    keys = keys.reshape((num_kept, thin) + keys.shape[1:])
    run = functools.partial(_run, algorithm, observables, params is None)
    if not progress:
        return run(keys, state, params)

    from tqdm.auto import tqdm

    chunk = math.ceil(num_kept / _PROGRESS_CHUNKS)
    traces = []
    with tqdm(total=num_steps, unit="step") as bar:
        for start in range(0, num_kept, chunk):
            block = keys[start : start + chunk]
            state, trace = run(block, state, params)
            jax.block_until_ready(trace)
            traces.append(trace)
            bar.update(block.shape[0] * thin)
    trace = jax.tree.map(lambda *xs: jnp.concatenate(xs), *traces)
    return state, trace


def _step_keys(rng_key, num_steps):
    rng_key = random.as_key(rng_key)
    if rng_key.ndim == 0:
        return jax.random.split(rng_key, num_steps)
    per_chain = jax.vmap(lambda key: jax.random.split(key, num_steps))
    keys = per_chain(rng_key.reshape(-1))
    return jnp.moveaxis(keys, 0, 1).reshape((num_steps,) + rng_key.shape)


def _is_state(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields") and x._fields[0] == "position"


@functools.partial(jax.jit, static_argnums=0)
def _init(algorithm, positions):
    return algorithm.init(positions)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _run(algorithm, observables, no_params, keys, state, params):
    def transition(state, key):
        if no_params:
            state, info = algorithm.step(key, state)
        else:
            state, info = algorithm.step(key, state, params)
        return state, (info.acceptance_rate, info.is_accepted)

    def record(state, block_keys):
        # One scan over the block traces the kernel once; of its per-step
        # outputs (one scalar per chain) only the last is kept.
        state, (acceptance_rate, is_accepted) = jax.lax.scan(
            transition, state, block_keys
        )
        values = dict(observables(state.position))
        values["acceptance_rate"] = acceptance_rate[-1]
        values["is_accepted"] = is_accepted[-1]
        return state, values

    return jax.lax.scan(record, state, keys)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
