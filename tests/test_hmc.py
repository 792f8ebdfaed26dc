"""HMC: the integrator, the accept/reject step and exactness on U(1)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2hmc_jax import adaptation, diagnostics, hmc, sample
from l2hmc_jax.kernels import hmc as hmc_kernel
from l2hmc_jax.targets import make_target, u1, u1_exact


@functools.partial(jax.jit, static_argnums=(0, 4))
def _leapfrog(target, x, v, step_size, num_steps):
    g = target.logdensity_grad_fn(x)
    return hmc_kernel.leapfrog(target, x, v, g, step_size, num_steps)


def _energy(target, x, v):
    return -target.logdensity_fn(x) + 0.5 * (v**2).sum(axis=(-3, -2, -1))


def test_energy_error_shrinks_as_step_size_squared():
    with jax.enable_x64(True):
        target = u1.target(2.0, (4, 4))
        key_x, key_v = jax.random.split(jax.random.key(0))
        x = u1.random_links(key_x, 64, (4, 4), dtype=jnp.float64)
        v = jax.random.normal(key_v, x.shape, dtype=jnp.float64)
        h0 = _energy(target, x, v)
        errors = []
        # A fixed trajectory length of 1: the global energy error of leapfrog
        # is c * eps^2 + O(eps^4) at fixed length.
        for num_steps in (20, 40, 80):
            x1, v1, _ = _leapfrog(target, x, v, 1.0 / num_steps, num_steps)
            errors.append(float(jnp.abs(_energy(target, x1, v1) - h0).mean()))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 4.0, rtol=0.05)


def test_leapfrog_is_reversible():
    with jax.enable_x64(True):
        target = u1.target(3.0, (4, 6))
        key_x, key_v = jax.random.split(jax.random.key(1))
        x = u1.random_links(key_x, 8, (4, 6), dtype=jnp.float64)
        v = jax.random.normal(key_v, x.shape, dtype=jnp.float64)
        x1, v1, _ = _leapfrog(target, x, v, 0.1, 15)
        x2, v2, _ = _leapfrog(target, x1, -v1, 0.1, 15)
        assert not np.allclose(x1, x)
        np.testing.assert_allclose(u1.wrap(x2 - x), 0, atol=1e-10)
        np.testing.assert_allclose(-v2, v, atol=1e-10)


def test_non_finite_proposals_are_rejected():
    target = u1.target(2.0, (4, 4))
    x = u1.random_links(jax.random.key(2), 16, (4, 4))
    algorithm = hmc(target, step_size=1e30, num_steps=3)
    state = algorithm.init(x)
    new_state, info = jax.jit(algorithm.step)(jax.random.key(3), state)
    assert not bool(info.is_accepted.any())
    np.testing.assert_array_equal(info.acceptance_rate, 0.0)
    np.testing.assert_array_equal(new_state.position, x)
    assert bool(jnp.isfinite(new_state.logdensity).all())


def test_a_nan_log_density_is_rejected():
    def logdensity_fn(x):
        return jnp.where(x[..., 0] > 0.5, jnp.nan, -0.5 * (x**2).sum(-1))

    target = make_target(logdensity_fn, (2,))
    x = jnp.zeros((256, 2))
    algorithm = hmc(target, step_size=0.5, num_steps=4)
    state, info = jax.jit(algorithm.step)(jax.random.key(4), algorithm.init(x))
    assert bool((state.position[:, 0] <= 0.5).all())
    assert int(info.is_accepted.sum()) > 0


def test_one_chain_and_many_chains():
    target = u1.target(2.0, (4, 4))
    links = u1.random_links(jax.random.key(5), 3, (4, 4))
    algorithm = hmc(target, step_size=0.2, num_steps=4)
    state, info = algorithm.step(jax.random.key(6), algorithm.init(links[0]))
    assert state.position.shape == (2, 4, 4)
    assert info.acceptance_rate.shape == ()
    state, info = algorithm.step(jax.random.key(6), algorithm.init(links))
    assert state.position.shape == (3, 2, 4, 4)
    assert info.is_accepted.shape == (3,)
    assert algorithm.target is target
    assert state._fields[0] == "position"


def test_vmap_over_chains_matches_the_batched_kernel():
    target = u1.target(2.0, (4, 4))
    links = u1.random_links(jax.random.key(5), 3, (4, 4))
    algorithm = hmc(target, step_size=0.2, num_steps=4)
    keys = jax.random.split(jax.random.key(8), 3)
    state = jax.vmap(algorithm.init)(links)
    vmapped, _ = jax.vmap(algorithm.step)(keys, state)
    for i in range(3):
        single, _ = algorithm.step(keys[i], algorithm.init(links[i]))
        np.testing.assert_allclose(vmapped.position[i], single.position, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_bad_step_size_is_named(bad):
    with pytest.raises(ValueError, match="step_size"):
        hmc(u1.target(1.0, (4, 4)), step_size=bad, num_steps=3)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_num_steps_is_named(bad):
    with pytest.raises(ValueError, match="num_steps"):
        hmc(u1.target(1.0, (4, 4)), step_size=0.1, num_steps=bad)


def test_dual_averaging_reaches_the_target_acceptance():
    target = u1.target(3.0, (8, 8))
    links = u1.random_links(jax.random.key(9), 32, (8, 8))
    result = adaptation.find_step_size(
        jax.random.key(10), target, links, 8, 400, target_acceptance=0.8
    )
    algorithm = hmc(target, result.step_size, 8)
    _, trace = sample(jax.random.key(11), algorithm, result.state, 200)
    # The band is the algorithm's, not a statistical tolerance: dual averaging
    # returns a step size whose acceptance is near, not at, the target.
    assert abs(float(trace["acceptance_rate"].mean()) - 0.8) < 0.05


def test_bad_target_acceptance_is_named():
    target = u1.target(1.0, (4, 4))
    with pytest.raises(ValueError, match="target_acceptance"):
        adaptation.find_step_size(
            jax.random.key(0),
            target,
            jnp.zeros((1, 2, 4, 4)),
            4,
            10,
            target_acceptance=1.5,
        )


@pytest.mark.parametrize("beta", [2.0, 4.0])
def test_hmc_reproduces_the_exact_observables(beta):
    size = (8, 8)
    target = u1.target(beta, size)
    links = u1.random_links(jax.random.key(12), 128, size)
    tuned = adaptation.find_step_size(jax.random.key(13), target, links, 10, 300)
    algorithm = hmc(target, tuned.step_size, 10)
    _, trace = sample(jax.random.key(14), algorithm, tuned.state, 3000)
    plaquette = np.asarray(trace["plaquette"], np.float64)[500:]
    charge = np.asarray(trace["charge"], np.float64)[500:]
    exact = {
        "plaquette": u1_exact.mean_plaquette(beta, size),
        "charge_squared": u1_exact.mean_charge_squared(beta, size),
    }
    for name, values in (("plaquette", plaquette), ("charge_squared", charge**2)):
        mean = values.mean()
        error = diagnostics.standard_error(values)
        assert abs(mean - exact[name]) < 4 * error, (name, mean, error, exact[name])
