"""L2HMC: exact inverses and log-dets, HMC as a special case, exactness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2hmc_jax import diagnostics, hmc, l2hmc, sample
from l2hmc_jax.kernels.base import kinetic_energy
from l2hmc_jax.targets import make_target, toy, u1, u1_exact

LATTICE = (4, 4)


def _gaussian_5d():
    scales = jnp.array([0.5, 1.0, 2.0, 0.3, 1.5])
    return make_target(lambda x: -0.5 * ((x / scales) ** 2).sum(-1), (5,))


def _sampler(target, dtype, proposal="merged", network="mlp", shared=False):
    kwargs = {"output_scale": 0.5, "hidden_sizes": (16,)}
    if network == "conv":
        kwargs = {"output_scale": 0.5, "channels": (4,)}
    return l2hmc(
        target,
        num_layers=2,
        step_size=0.2,
        network=network,
        network_kwargs=kwargs,
        shared=shared,
        proposal=proposal,
        param_dtype=dtype,
    )


def _random_state(target, key, num_chains, dtype):
    key_x, key_v = jax.random.split(key)
    shape = (num_chains,) + target.event_shape
    if target.manifold == "circle":
        x = jax.random.uniform(key_x, shape, dtype, -jnp.pi, jnp.pi)
    else:
        x = jax.random.normal(key_x, shape, dtype)
    return x, jax.random.normal(key_v, shape, dtype)


def _angle_error(a, b, circle):
    d = a - b
    return jnp.abs(u1.wrap(d) if circle else d).max()


CASES = [
    ("u1", "mlp", False),
    ("u1", "conv", False),
    ("u1", "mlp", True),
    ("gaussian", "mlp", False),
]


def _target(name):
    return u1.target(2.0, LATTICE) if name == "u1" else _gaussian_5d()


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-10)])
@pytest.mark.parametrize("name, network, shared", CASES)
def test_inverse_undoes_forward(name, network, shared, dtype, tol):
    with jax.enable_x64(dtype == jnp.float64):
        target = _target(name)
        sampler = _sampler(target, dtype, network=network, shared=shared)
        params = sampler.init_params(jax.random.key(0))
        x, v = _random_state(target, jax.random.key(1), 4, dtype)
        x1, v1, logdet = jax.jit(sampler.forward)(params, x, v)
        x2, v2, logdet_inv = jax.jit(sampler.inverse)(params, x1, v1)
        circle = target.manifold == "circle"
        assert float(_angle_error(x1, x, circle)) > 1e-2
        assert float(jnp.abs(logdet).max()) > 1e-3
        assert float(_angle_error(x2, x, circle)) < tol
        assert float(jnp.abs(v2 - v).max()) < tol
        np.testing.assert_allclose(logdet_inv, -logdet, atol=tol)


@pytest.mark.parametrize("name", ["u1", "gaussian"])
def test_log_dets_equal_the_jacobians(name):
    with jax.enable_x64(True):
        target = _target(name)
        sampler = _sampler(target, jnp.float64)
        params = sampler.init_params(jax.random.key(2))
        x, v = _random_state(target, jax.random.key(3), 1, jnp.float64)
        n = x.size

        def flat(fn):
            def mapped(z):
                xx = z[:n].reshape(x.shape)
                vv = z[n:].reshape(x.shape)
                a, b, logdet = fn(params, xx, vv)
                return jnp.concatenate([a.ravel(), b.ravel()]), logdet[0]

            return mapped

        z = jnp.concatenate([x.ravel(), v.ravel()])
        for fn in (sampler.forward, sampler.inverse, sampler.proposal_map):
            jacobian = jax.jacfwd(lambda z, fn=fn: flat(fn)(z)[0])(z)
            _, expected = jnp.linalg.slogdet(jacobian)
            np.testing.assert_allclose(flat(fn)(z)[1], expected, atol=1e-9)


@pytest.mark.parametrize("name", ["u1", "gaussian"])
def test_merged_proposal_is_an_involution(name):
    with jax.enable_x64(True):
        target = _target(name)
        sampler = _sampler(target, jnp.float64)
        params = sampler.init_params(jax.random.key(4))
        x, v = _random_state(target, jax.random.key(5), 3, jnp.float64)
        x1, v1, logdet1 = sampler.proposal_map(params, x, v)
        x2, v2, logdet2 = sampler.proposal_map(params, x1, v1)
        circle = target.manifold == "circle"
        assert float(_angle_error(x1, x, circle)) > 1e-2
        assert float(_angle_error(x2, x, circle)) < 1e-10
        assert float(jnp.abs(v2 - v).max()) < 1e-10
        np.testing.assert_allclose(logdet2, -logdet1, atol=1e-10)


@pytest.mark.parametrize("proposal", ["merged", "random"])
def test_acceptance_probability_by_hand(proposal):
    with jax.enable_x64(True):
        target = u1.target(2.0, LATTICE)
        sampler = _sampler(target, jnp.float64, proposal=proposal)
        params = sampler.init_params(jax.random.key(6))
        x, _ = _random_state(target, jax.random.key(7), 5, jnp.float64)
        state = sampler.init(x)
        new_state, info = sampler.step(jax.random.key(8), state, params)
        v = info.momentum
        x_f, v_f, ld_f = sampler.forward(params, x, v)
        if proposal == "merged":
            x_new, v_new, ld_b = sampler.inverse(params, x_f, -v_f)
            logdet = ld_f + ld_b
            np.testing.assert_array_equal(info.direction, 1)
        else:
            x_b, v_b, ld_b = sampler.inverse(params, x, v)
            forward = np.asarray(info.direction) > 0
            assert 0 < forward.sum() < 5
            pick = lambda a, b: np.where(  # noqa: E731
                forward.reshape((5,) + (1,) * (a.ndim - 1)), a, b
            )
            x_new, v_new, logdet = pick(x_f, x_b), pick(v_f, v_b), pick(ld_f, ld_b)

        def energy(x, v):
            return u1.action(x, 2.0) + kinetic_energy(target, v)

        expected = np.minimum(1, np.exp(energy(x, v) - energy(x_new, v_new) + logdet))
        assert 0 < expected.min() < 1
        np.testing.assert_allclose(info.acceptance_rate, expected, atol=1e-10)
        np.testing.assert_allclose(info.logdet, logdet, atol=1e-10)
        moved = np.asarray(info.is_accepted)
        np.testing.assert_allclose(
            u1.wrap(new_state.position[moved] - x_new[moved]), 0, atol=1e-10
        )
        kept = ~np.asarray(info.is_accepted)
        np.testing.assert_array_equal(new_state.position[kept], x[kept])


def test_zero_networks_reproduce_hmc_step_for_step():
    with jax.enable_x64(True):
        target = u1.target(2.0, LATTICE)
        sampler = l2hmc(target, num_layers=3, step_size=0.15, param_dtype=jnp.float64)
        params = sampler.init_params(jax.random.key(9))
        x, _ = _random_state(target, jax.random.key(10), 8, jnp.float64)
        baseline = hmc(target, step_size=0.15, num_steps=6)
        _, trace_l2hmc = sample(
            jax.random.key(11),
            sampler,
            x,
            20,
            params=params,
            observables=lambda x: {"links": x},
        )
        _, trace_hmc = sample(
            jax.random.key(11), baseline, x, 20, observables=lambda x: {"links": x}
        )
        np.testing.assert_array_equal(
            trace_l2hmc["is_accepted"], trace_hmc["is_accepted"]
        )
        np.testing.assert_allclose(
            trace_l2hmc["acceptance_rate"], trace_hmc["acceptance_rate"], atol=1e-8
        )
        np.testing.assert_allclose(
            u1.wrap(trace_l2hmc["links"] - trace_hmc["links"]), 0, atol=1e-8
        )
        assert trace_hmc["is_accepted"].mean() > 0.5


def test_non_finite_proposals_are_rejected():
    target = u1.target(2.0, LATTICE)
    sampler = l2hmc(target, num_layers=2, step_size=1e30)
    params = sampler.init_params(jax.random.key(12))
    x, _ = _random_state(target, jax.random.key(13), 6, jnp.float32)
    state, info = jax.jit(sampler.step)(jax.random.key(14), sampler.init(x), params)
    assert not bool(info.is_accepted.any())
    np.testing.assert_array_equal(state.position, x)
    assert bool(jnp.isfinite(state.logdensity).all())


def test_composes_with_vmap_and_jit():
    target = u1.target(2.0, LATTICE)
    sampler = _sampler(target, jnp.float32)
    params = sampler.init_params(jax.random.key(15))
    x, _ = _random_state(target, jax.random.key(16), 4, jnp.float32)
    keys = jax.random.split(jax.random.key(17), 4)
    state = jax.vmap(sampler.init)(x)
    vmapped, _ = jax.jit(jax.vmap(sampler.step, (0, 0, None)))(keys, state, params)
    single, _ = sampler.step(keys[1], sampler.init(x[1]), params)
    np.testing.assert_allclose(vmapped.position[1], single.position, atol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"num_layers": 0}, "num_layers"),
        ({"step_size": -1.0}, "step_size"),
        ({"proposal": "sideways"}, "proposal"),
        ({"network": "transformer"}, "transformer"),
    ],
)
def test_bad_arguments_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        l2hmc(u1.target(2.0, LATTICE), **bad)


def test_untrained_random_sampler_is_exact_on_u1():
    beta = 2.0
    target = u1.target(beta, LATTICE)
    sampler = _sampler(target, jnp.float32)
    params = sampler.init_params(jax.random.key(18))
    x = u1.random_links(jax.random.key(19), 64, LATTICE)
    _, trace = sample(jax.random.key(20), sampler, x, 1500, params=params)
    assert 0.2 < float(trace["acceptance_rate"].mean()) < 0.95
    exact = {
        "plaquette": u1_exact.mean_plaquette(beta, LATTICE),
        "charge_squared": u1_exact.mean_charge_squared(beta, LATTICE),
    }
    plaquette = np.asarray(trace["plaquette"], np.float64)[200:]
    charge = np.asarray(trace["charge"], np.float64)[200:]
    for name, values in (("plaquette", plaquette), ("charge_squared", charge**2)):
        mean, error = values.mean(), diagnostics.standard_error(values)
        assert abs(mean - exact[name]) < 4 * error, (name, mean, error, exact[name])


def test_untrained_sampler_preserves_the_strongly_correlated_gaussian():
    # Chains started from exact draws stay exactly distributed under an exact
    # kernel, so the final positions of independent chains are iid samples:
    # their covariance is compared with the exact one through iid standard
    # errors, while the chains must have moved far for the check to bite.
    target = toy.strongly_correlated_gaussian()
    _, covariance = toy.exact_moments(target)
    sampler = l2hmc(
        target,
        num_layers=4,
        step_size=0.05,
        network_kwargs={"output_scale": 0.01, "hidden_sizes": (16,)},
    )
    params = sampler.init_params(jax.random.key(21))
    num_chains = 4096
    chol = np.linalg.cholesky(covariance)
    normal = jax.random.normal(jax.random.key(22), (num_chains, 2))
    x0 = jnp.asarray(np.asarray(normal) @ chol.T, jnp.float32)
    state, trace = sample(
        jax.random.key(23), sampler, x0, 200, params=params, observables=lambda x: {}
    )
    assert 0.2 < float(trace["acceptance_rate"].mean()) < 0.99
    x = np.asarray(state.position, np.float64)
    moved = np.linalg.norm(x - np.asarray(x0), axis=1).mean()
    assert moved > 1.5, moved
    for i, j in ((0, 0), (0, 1), (1, 1)):
        products = x[:, i] * x[:, j]
        error = products.std() / np.sqrt(num_chains)
        assert abs(products.mean() - covariance[i, j]) < 4 * error, (i, j)
