"""`sample`: what it records, thinning, progress, and compiling once."""

import chex
import jax
import numpy as np
import pytest

from l2hmc_jax import hmc, l2hmc, sample
from l2hmc_jax.kernels import SamplingAlgorithm
from l2hmc_jax.kernels import hmc as hmc_kernel
from l2hmc_jax.targets import u1

SIZE = (4, 4)
TARGET = u1.target(2.0, SIZE)
ALGORITHM = hmc(TARGET, step_size=0.25, num_steps=4)
LINKS = u1.random_links(jax.random.key(0), 6, SIZE)


@pytest.fixture(scope="module")
def trace_thin1():
    return sample(jax.random.key(1), ALGORITHM, LINKS, 12)


def test_trace_holds_the_target_observables(trace_thin1):
    state, trace = trace_thin1
    assert set(trace) == {
        "plaquette",
        "charge",
        "charge_sin",
        "acceptance_rate",
        "is_accepted",
    }
    for value in trace.values():
        assert value.shape == (12, 6)
    np.testing.assert_allclose(
        trace["plaquette"][-1], u1.mean_plaquette(state.position), rtol=1e-6
    )
    assert trace["is_accepted"].dtype == bool


def test_thinning_keeps_every_thin_th_state(trace_thin1):
    state, trace = trace_thin1
    thinned_state, thinned = sample(jax.random.key(1), ALGORITHM, LINKS, 12, thin=3)
    for name, value in thinned.items():
        assert value.shape == (4, 6)
        np.testing.assert_allclose(value, trace[name][2::3], rtol=1e-6)
    np.testing.assert_allclose(thinned_state.position, state.position, atol=1e-6)


def test_progress_gives_the_same_answer(trace_thin1):
    state, trace = trace_thin1
    shown_state, shown = sample(jax.random.key(1), ALGORITHM, LINKS, 12, progress=True)
    for name, value in shown.items():
        np.testing.assert_allclose(value, trace[name], rtol=1e-6)
    np.testing.assert_allclose(shown_state.position, state.position, atol=1e-6)


def test_a_state_continues_the_chain(trace_thin1):
    _, trace = trace_thin1
    state, first = sample(jax.random.key(2), ALGORITHM, LINKS, 5)
    _, second = sample(jax.random.key(3), ALGORITHM, state, 5)
    assert second["plaquette"].shape == (5, 6)
    assert not np.allclose(second["plaquette"][0], trace["plaquette"][0])


def test_custom_observables_can_store_configurations():
    state, trace = sample(
        jax.random.key(1), ALGORITHM, LINKS, 4, observables=lambda x: {"links": x}
    )
    assert set(trace) == {"links", "acceptance_rate", "is_accepted"}
    assert trace["links"].shape == (4,) + LINKS.shape
    np.testing.assert_array_equal(trace["links"][-1], state.position)


def test_params_reach_the_kernel():
    kernel = hmc_kernel.build_kernel(TARGET, 4)
    algorithm = SamplingAlgorithm(
        ALGORITHM.init,
        lambda key, state, step_size: kernel(key, state, step_size),
        TARGET,
    )
    _, with_params = sample(jax.random.key(1), algorithm, LINKS, 6, params=0.25)
    _, fixed = sample(jax.random.key(1), ALGORITHM, LINKS, 6)
    for name, value in fixed.items():
        np.testing.assert_allclose(with_params[name], value, rtol=1e-6)


def test_one_chain_without_a_chain_axis():
    _, trace = sample(jax.random.key(1), ALGORITHM, LINKS[0], 3)
    assert trace["charge"].shape == (3,)


def test_sample_compiles_once_per_shape():
    counted = ALGORITHM._replace(step=chex.assert_max_traces(ALGORITHM.step, n=1))
    sample(jax.random.key(4), counted, LINKS, 8)
    sample(jax.random.key(5), counted, LINKS + 0.1, 8)
    with pytest.raises(AssertionError):
        # Another number of chains is another shape: one more trace.
        sample(jax.random.key(5), counted, LINKS[:3], 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": 10, "thin": 3}, "multiple of thin"),
        ({"num_steps": 4, "thin": 0}, "thin"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    num_steps = kwargs.pop("num_steps")
    with pytest.raises(ValueError, match=match):
        sample(jax.random.key(0), ALGORITHM, LINKS, num_steps, **kwargs)


def test_positions_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match="event shape"):
        sample(jax.random.key(0), ALGORITHM, LINKS[..., :3], 4)


@pytest.mark.parametrize("kernel", ["hmc", "l2hmc"])
def test_per_chain_keys_make_chains_independent_of_the_others(kernel):
    size = (4, 4)
    target = u1.target(2.0, size)
    if kernel == "hmc":
        algorithm, params = hmc(target, 0.2, 4), None
    else:
        algorithm = l2hmc(
            target,
            2,
            proposal="random",
            network_kwargs={"hidden_sizes": (8,), "output_scale": 0.1},
        )
        params = algorithm.init_params(jax.random.key(3))
    links = u1.random_links(jax.random.key(4), 8, size)
    keys = jax.random.split(jax.random.key(5), 8)
    _, full = sample(keys, algorithm, links, 6, params=params)
    _, part = sample(keys[2:5], algorithm, links[2:5], 6, params=params)
    for name in ("plaquette", "is_accepted"):
        np.testing.assert_allclose(full[name][:, 2:5], part[name], rtol=1e-6)
    assert bool(full["is_accepted"].any())
    # Raw key data works as well as typed keys.
    _, raw = sample(jax.random.key_data(keys), algorithm, links, 6, params=params)
    np.testing.assert_array_equal(raw["plaquette"], full["plaquette"])
    with pytest.raises(ValueError, match="per-chain keys"):
        sample(keys[:3], algorithm, links, 6, params=params)
