"""The toy targets against direct formulas, direct samples and an HMC run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2hmc_jax import diagnostics, hmc, sample
from l2hmc_jax.targets import toy

# Written out here rather than read from the module, so that the tests check
# the stored moments instead of repeating them.
ILL_VARIANCES = np.logspace(-2, 2, 50)
CORRELATED_COVARIANCE = np.array([[50.005, 49.995], [49.995, 50.005]])
MIXTURE_MEANS = np.array([[2.0, 0.0], [-2.0, 0.0]])
MIXTURE_VARIANCE = 0.1
ETA = 0.01


def gaussian_logpdf(x, covariance):
    dim = covariance.shape[0]
    precision = np.linalg.inv(covariance)
    _, logdet = np.linalg.slogdet(covariance)
    quadratic = np.einsum("...i,ij,...j->...", x, precision, x)
    return -0.5 * (quadratic + logdet + dim * math.log(2 * math.pi))


def mixture_logpdf(x):
    covariance = MIXTURE_VARIANCE * np.eye(2)
    first, second = (gaussian_logpdf(x - m, covariance) for m in MIXTURE_MEANS)
    return np.logaddexp(first, second) + math.log(0.5)


def mixture_grad(x):
    components = np.stack(
        [gaussian_logpdf(x - m, MIXTURE_VARIANCE * np.eye(2)) for m in MIXTURE_MEANS]
    )
    responsibilities = np.exp(components - components.max(axis=0))
    responsibilities /= responsibilities.sum(axis=0)
    pulls = np.stack([(m - x) / MIXTURE_VARIANCE for m in MIXTURE_MEANS])
    return (responsibilities[..., None] * pulls).sum(axis=0)


# name -> (factory, normalised or unnormalised reference log-density,
# analytic gradient, scale of the random test points)
CASES = {
    "ill_conditioned": (
        toy.ill_conditioned_gaussian,
        lambda x: gaussian_logpdf(x, np.diag(ILL_VARIANCES)),
        lambda x: -x / ILL_VARIANCES,
        np.sqrt(ILL_VARIANCES),
    ),
    "correlated": (
        toy.strongly_correlated_gaussian,
        lambda x: gaussian_logpdf(x, CORRELATED_COVARIANCE),
        lambda x: -np.linalg.solve(CORRELATED_COVARIANCE, x.T).T,
        np.array([7.0, 7.0]),
    ),
    "rough_well": (
        toy.rough_well,
        lambda x: -0.5 * (x**2).sum(-1) - ETA * np.cos(x / ETA).sum(-1),
        lambda x: -x + np.sin(x / ETA),
        np.array([1.0, 1.0]),
    ),
    "mixture": (
        toy.mixture_of_gaussians,
        mixture_logpdf,
        mixture_grad,
        np.array([2.5, 0.5]),
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    return CASES[request.param]


def test_logdensity_and_gradient_match_direct_formulas(case):
    factory, reference, reference_grad, scale = case
    target = factory()
    rng = np.random.default_rng(0)
    x = scale * rng.standard_normal((32,) + target.event_shape)
    with jax.enable_x64(True):
        logp = np.asarray(target.logdensity_fn(jnp.asarray(x)))
        grad = np.asarray(target.logdensity_grad_fn(jnp.asarray(x)))
    expected = reference(x)
    # The library drops normalising constants: the difference must be one
    # constant across points.
    offset = logp - expected
    np.testing.assert_allclose(offset, offset[0], atol=1e-9 * np.abs(expected).max())
    np.testing.assert_allclose(grad, reference_grad(x), rtol=1e-9, atol=1e-9)


def test_shapes_of_one_point_and_of_chain_axes(case):
    target = case[0]()
    dim = target.event_shape[0]
    for batch in [(), (5,), (3, 4)]:
        x = jnp.ones(batch + (dim,)) * 0.3
        assert target.batch_shape(x) == batch
        assert target.logdensity_fn(x).shape == batch
        assert target.logdensity_grad_fn(x).shape == batch + (dim,)
        assert target.distance_fn(x, x + 1).shape == batch
        np.testing.assert_allclose(target.distance_fn(x, x + 1), dim, rtol=1e-6)
        observables = target.observables_fn(x)
        assert observables
        for value in observables.values():
            assert value.shape == batch
    with pytest.raises(ValueError, match="shape"):
        target.logdensity_fn(jnp.ones((4, dim + 1)))


def test_targets_are_euclidean_and_hashable(case):
    target = case[0]()
    assert target.manifold == "euclidean"
    hash(target)
    mean, covariance = toy.exact_moments(target)
    dim = target.event_shape[0]
    assert mean.shape == (dim,) and covariance.shape == (dim, dim)
    np.testing.assert_array_equal(covariance, covariance.T)


def test_ill_conditioned_observables():
    target = toy.ill_conditioned_gaussian(dim=6)
    x = jnp.arange(12.0).reshape(2, 6)
    observables = target.observables_fn(x)
    assert sorted(observables) == ["radius_squared", "x0", "x5"]
    np.testing.assert_allclose(observables["x5"], [5.0, 11.0])
    np.testing.assert_allclose(observables["radius_squared"], (x**2).sum(-1))


def _assert_moments_match_samples(target, samples, max_z):
    """Sample mean and covariance within ``max_z`` standard errors of exact.

    The standard errors come from the samples themselves, so they hold for
    non-Gaussian densities too.
    """
    mean, covariance = toy.exact_moments(target)
    n = samples.shape[0]
    z_mean = (samples.mean(0) - mean) / (samples.std(0) / math.sqrt(n))
    centred = samples - mean
    products = centred[:, :, None] * centred[:, None, :]
    estimate = products.mean(0)
    error = products.std(0) / math.sqrt(n)
    z_covariance = (estimate - covariance) / error
    assert np.abs(z_mean).max() < max_z, z_mean
    assert np.abs(z_covariance).max() < max_z, z_covariance


def test_gaussian_and_mixture_moments_against_direct_samples():
    rng = np.random.default_rng(1)
    n = 20_000

    # 50 means and 1275 distinct covariances: the largest of ~1300 normal
    # z-scores is rarely above 4, never above 5.
    z = rng.standard_normal((n, 50))
    _assert_moments_match_samples(
        toy.ill_conditioned_gaussian(), np.sqrt(ILL_VARIANCES) * z, max_z=5.0
    )

    angle = np.pi / 4
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    )
    z = rng.standard_normal((n, 2)) * np.array([10.0, 0.1])
    _assert_moments_match_samples(
        toy.strongly_correlated_gaussian(), z @ rotation.T, max_z=4.0
    )

    component = rng.integers(0, 2, n)
    z = rng.standard_normal((n, 2)) * math.sqrt(MIXTURE_VARIANCE)
    _assert_moments_match_samples(
        toy.mixture_of_gaussians(), MIXTURE_MEANS[component] + z, max_z=4.0
    )


def _bessel_i(order, z, num_terms=60):
    """``I_n(z)`` from its power series, for the small ``z`` used here."""
    k = np.arange(num_terms)
    log_terms = (2 * k + order) * math.log(z / 2) - np.array(
        [math.lgamma(j + 1) + math.lgamma(j + order + 1) for j in k]
    )
    return float(np.exp(log_terms).sum())


def _rough_well_variance_by_bessel_series(eta, max_order=40):
    """``E[x^2]`` from ``exp(-eta cos t) = sum_n (-1)^n I_n(eta) exp(i n t)``.

    Under N(0, 1), ``E[exp(i k x)] = exp(-k^2 / 2)`` and
    ``E[x^2 exp(i k x)] = (1 - k^2) exp(-k^2 / 2)``, with ``k = n / eta``.
    """
    mass = second_moment = 0.0
    for n in range(-max_order, max_order + 1):
        k = n / eta
        weight = (-1) ** n * _bessel_i(abs(n), eta) * math.exp(-0.5 * k**2)
        mass += weight
        second_moment += weight * (1 - k**2)
    return second_moment / mass


@pytest.mark.parametrize("eta", [0.01, 0.3, 0.5, 1.0, 3.0])
def test_rough_well_quadrature_against_bessel_series(eta):
    _, covariance = toy.exact_moments(toy.rough_well(eta))
    expected = _rough_well_variance_by_bessel_series(eta)
    np.testing.assert_allclose(np.diag(covariance), expected, rtol=1e-12)
    np.testing.assert_array_equal(covariance[0, 1], 0.0)
    # Halving and doubling the grid change nothing: the quadrature converged.
    for points in (16, 64):
        coarse_or_fine = toy._rough_well_variance(eta, points_per_period=points)
        np.testing.assert_allclose(coarse_or_fine, covariance[0, 0], rtol=1e-13)


def test_rough_well_moments_against_rejection_sampling():
    # eta = 0.5 moves the variance to 1.28, far from the N(0, 1) value that
    # the default eta = 0.01 keeps to double precision. Proposals from
    # N(0, 1) accepted with exp(-eta cos(x / eta) - eta) <= 1 are exact
    # draws, since the cos term is bounded.
    eta = 0.5
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200_000, 2))
    accept = rng.random(x.shape) < np.exp(-eta * np.cos(x / eta) - eta)
    # Coordinates are independent, so each is accepted on its own.
    samples = [x[accept[:, i], i] for i in range(2)]
    mean, covariance = toy.exact_moments(toy.rough_well(eta))
    for i, s in enumerate(samples):
        n = s.size
        z_mean = (s.mean() - mean[i]) / (s.std() / math.sqrt(n))
        z_variance = ((s**2).mean() - covariance[i, i]) / ((s**2).std() / math.sqrt(n))
        assert abs(z_mean) < 4 and abs(z_variance) < 4, (z_mean, z_variance)
    assert abs(covariance[0, 0] - 1) > 0.2


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="eta"):
        toy.rough_well(0.0)
    with pytest.raises(ValueError, match="dim"):
        toy.ill_conditioned_gaussian(0)
    with pytest.raises(ValueError, match="exact moments"):
        toy.exact_moments(toy.base.make_target(lambda x: -(x**2).sum(-1), (2,)))


def test_hmc_reproduces_the_mean_of_the_strongly_correlated_gaussian():
    target = toy.strongly_correlated_gaussian()
    mean, covariance = toy.exact_moments(target)
    # A step of 0.1 against a narrow standard deviation of 0.1 is stable
    # (eps * omega = 1 < 2); 150 steps make a trajectory of 15, about a
    # quarter period along the wide direction (standard deviation 10), so
    # successive states there are nearly independent.
    algorithm = hmc(target, step_size=0.1, num_steps=150)
    num_chains, num_burn_in, num_kept = 32, 50, 250
    key_init, key_sample = jax.random.split(jax.random.key(3))
    # Start off the mean so that the burn-in has something to forget.
    positions = 5.0 + jax.random.normal(key_init, (num_chains, 2))
    _, trace = sample(key_sample, algorithm, positions, num_burn_in + num_kept)
    x0 = np.asarray(trace["x0"][num_burn_in:])
    assert x0.shape == (num_kept, num_chains)
    assert np.asarray(trace["acceptance_rate"]).mean() > 0.5
    error = diagnostics.standard_error(x0)
    # The spread is within a loose factor of the exact one, and the mean
    # within 4 standard errors.
    assert 0.5 < x0.var() / covariance[0, 0] < 2.0
    assert abs(x0.mean() - mean[0]) < 4 * error, (x0.mean(), error)
