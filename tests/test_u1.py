"""The U(1) target against a plain loop-based reference."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2hmc_jax.targets import u1


def reference_plaquettes(links):
    """``P(n) = x0(n) + x1(n + e0) - x0(n + e1) - x1(n)`` by explicit loops."""
    _, l0, l1 = links.shape
    p = np.zeros((l0, l1))
    for i, j in itertools.product(range(l0), range(l1)):
        p[i, j] = (
            links[0, i, j]
            + links[1, (i + 1) % l0, j]
            - links[0, i, (j + 1) % l1]
            - links[1, i, j]
        )
    return p


def reference_force(links, beta):
    """``dS/dx`` by summing each plaquette's contribution to its four links."""
    _, l0, l1 = links.shape
    p = reference_plaquettes(links)
    f = np.zeros_like(links)
    for i, j in itertools.product(range(l0), range(l1)):
        s = beta * np.sin(p[i, j])
        f[0, i, j] += s
        f[1, (i + 1) % l0, j] += s
        f[0, i, (j + 1) % l1] -= s
        f[1, i, j] -= s
    return f


def reference_charges(links):
    p = reference_plaquettes(links)
    wrapped = np.angle(np.exp(1j * p))
    return wrapped.sum() / (2 * np.pi), np.sin(p).sum() / (2 * np.pi)


@pytest.fixture(scope="module", params=[(3, 4), (4, 4), (5, 3)])
def lattices(request):
    size = request.param
    with jax.enable_x64(True):
        links = u1.random_links(jax.random.key(7), 6, size, dtype=jnp.float64)
        links = np.asarray(links).reshape((2, 3) + links.shape[1:])
    return size, links


def test_plaquettes_action_and_charges_match_loops(lattices):
    _, links = lattices
    beta = 1.7
    with jax.enable_x64(True):
        p = np.asarray(u1.plaquettes(jnp.asarray(links)))
        s = np.asarray(u1.action(jnp.asarray(links), beta))
        q = np.asarray(u1.charge(jnp.asarray(links)))
        q_sin = np.asarray(u1.charge_sin(jnp.asarray(links)))
    assert p.shape == links.shape[:2] + links.shape[-2:]
    for a, b in itertools.product(range(2), range(3)):
        ref = reference_plaquettes(links[a, b])
        np.testing.assert_allclose(p[a, b], ref, atol=1e-12)
        np.testing.assert_allclose(s[a, b], beta * (1 - np.cos(ref)).sum(), rtol=1e-12)
        ref_q, ref_q_sin = reference_charges(links[a, b])
        assert abs(ref_q - round(ref_q)) < 1e-9
        assert q[a, b] == round(ref_q)
        np.testing.assert_allclose(q_sin[a, b], ref_q_sin, atol=1e-12)


def test_force_matches_loops_and_autodiff(lattices):
    _, links = lattices
    beta = 2.3
    with jax.enable_x64(True):
        x = jnp.asarray(links)
        f = np.asarray(u1.force(x, beta))
        g = np.asarray(jax.grad(lambda y: u1.action(y, beta).sum())(x))
    np.testing.assert_allclose(f, g, atol=1e-12)
    for a, b in itertools.product(range(2), range(3)):
        np.testing.assert_allclose(
            f[a, b], reference_force(links[a, b], beta), atol=1e-12
        )


def test_charge_is_an_integer_on_every_configuration():
    # Many random and many nearly ordered lattices, where plaquettes sit
    # close to the +-pi boundary of the wrap.
    key_hot, key_cold = jax.random.split(jax.random.key(3))
    hot = u1.random_links(key_hot, 500, (6, 5))
    cold = 0.5 * u1.random_links(key_cold, 500, (6, 5))
    for links in (hot, cold):
        q = u1.charge(links)
        raw = u1.wrap(u1.plaquettes(links)).sum(axis=(-2, -1)) / (2 * np.pi)
        np.testing.assert_allclose(raw, q, atol=1e-4)
        np.testing.assert_array_equal(q, np.round(q))
    assert np.unique(np.asarray(u1.charge(hot))).size > 2


def test_observables_agree_with_the_separate_functions():
    links = u1.random_links(jax.random.key(1), 3, (4, 6))
    obs = u1.target(2.0, (4, 6)).observables_fn(links)
    np.testing.assert_allclose(obs["charge"], u1.charge(links))
    np.testing.assert_allclose(obs["charge_sin"], u1.charge_sin(links), rtol=1e-6)
    np.testing.assert_allclose(obs["plaquette"], u1.mean_plaquette(links), rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtypes_are_preserved(dtype):
    with jax.enable_x64(True):
        links = u1.random_links(jax.random.key(0), 2, (4, 3), dtype=dtype)
        assert links.dtype == dtype
        assert links.shape == (2, 2, 4, 3)
        assert bool((links >= -np.pi).all() and (links < np.pi).all())
        for value in (
            u1.plaquettes(links),
            u1.action(links, 2.0),
            u1.force(links, 2.0),
            u1.charge(links),
            u1.charge_sin(links),
        ):
            assert value.dtype == dtype


def test_target_describes_the_lattice():
    target = u1.target(3.0, (4, 6))
    assert target.event_shape == (2, 4, 6)
    assert target.manifold == "circle"
    assert dict(target.params) == {"beta": 3.0, "size": (4, 6)}
    links = u1.random_links(jax.random.key(2), 5, (4, 6))
    np.testing.assert_allclose(
        target.logdensity_fn(links), -u1.action(links, 3.0), rtol=1e-6
    )
    np.testing.assert_allclose(
        target.logdensity_grad_fn(links), -u1.force(links, 3.0), rtol=1e-6
    )
    assert target.batch_shape(links) == (5,)


def test_traced_beta_is_allowed():
    links = u1.random_links(jax.random.key(2), 2, (4, 4))
    s = jax.jit(lambda b: u1.target(b, (4, 4)).logdensity_fn(links))(2.0)
    np.testing.assert_allclose(s, -u1.action(links, 2.0), rtol=1e-6)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_beta_is_named(beta):
    links = jnp.zeros((2, 4, 4))
    for call in (
        lambda: u1.action(links, beta),
        lambda: u1.force(links, beta),
        lambda: u1.target(beta, (4, 4)),
    ):
        with pytest.raises(ValueError, match="beta"):
            call()


@pytest.mark.parametrize("size", [(1, 4), (4, 0), (4,), (4, 4, 4), "44", (2.5, 4)])
def test_bad_size_is_named(size):
    with pytest.raises(ValueError, match="size"):
        u1.target(1.0, size)
    with pytest.raises(ValueError, match="size"):
        u1.random_links(jax.random.key(0), 2, size)


@pytest.mark.parametrize("shape", [(4, 4), (3, 4, 4), (2, 1, 4), (5, 2, 4, 1)])
def test_links_of_the_wrong_shape_are_rejected(shape):
    with pytest.raises(ValueError, match=r"\[\.\.\., 2, L0, L1\]"):
        u1.plaquettes(jnp.zeros(shape))


def test_positions_that_do_not_match_the_target_are_rejected():
    target = u1.target(1.0, (4, 4))
    with pytest.raises(ValueError, match="event shape"):
        target.batch_shape(jnp.zeros((3, 2, 4, 5)))


def test_zero_chains_are_rejected():
    with pytest.raises(ValueError, match="num_chains"):
        u1.random_links(jax.random.key(0), 0, (4, 4))
