"""Diagnostics: autocorrelation, tau_int, ESS and errors against AR(1) chains."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from l2hmc_jax import diagnostics

# Long enough that the per-chain mean subtraction biases tau_int by less than
# its statistical error (for r = 0.9, (2W + 1) / N ~ 1% against ~1.7%).
NUM_SAMPLES = 20_000
NUM_CHAINS = 64


def _ar1(seed, coefficient, num_samples, num_chains):
    """x_t = r x_{t-1} + sqrt(1 - r^2) e_t, started from its stationary N(0, 1)."""
    x = np.random.default_rng(seed).standard_normal((num_samples, num_chains))
    x[1:] *= np.sqrt(1.0 - coefficient**2)
    for t in range(1, num_samples):
        x[t] += coefficient * x[t - 1]
    return x


@functools.cache
def _long_ar1(coefficient):
    # Shared by several tests; the result is never written to.
    return _ar1(round(100 * (coefficient + 1)), coefficient, NUM_SAMPLES, NUM_CHAINS)


def _bartlett_variance(coefficient, lag, num_values):
    """Large-sample variance of an estimated AR(1) autocorrelation at ``lag``."""
    k = np.arange(1, 4000)

    def rho(t):
        return coefficient ** np.abs(t)

    terms = rho(k + lag) + rho(k - lag) - 2.0 * rho(lag) * rho(k)
    return (terms**2).sum() / num_values


@pytest.mark.parametrize("coefficient", [0.0, 0.5, 0.9])
def test_autocorrelation_of_ar1_is_its_power_of_the_lag(coefficient):
    x = _long_ar1(coefficient)
    rho = diagnostics.autocorrelation(x, max_lag=8)
    assert rho.shape == (9,)
    assert rho[0] == 1.0
    for lag in range(1, 9):
        sigma = np.sqrt(_bartlett_variance(coefficient, lag, x.size))
        assert abs(rho[lag] - coefficient**lag) < 4 * sigma, (lag, rho[lag], sigma)


@pytest.mark.parametrize("coefficient", [0.0, 0.5, 0.9])
def test_tau_int_of_ar1(coefficient):
    x = _long_ar1(coefficient)
    tau, window = diagnostics.integrated_autocorrelation_time(x, return_window=True)
    exact = (1 + coefficient) / (1 - coefficient)
    # Madras-Sokal: var(tau) ~= 2 (2W + 1) / (N M) tau^2.
    sigma = exact * np.sqrt(2 * (2 * window + 1) / x.size)
    assert abs(tau - exact) < 4 * sigma, (tau, exact, sigma)
    assert window % 2 == 0 and window >= 5 * tau
    assert diagnostics.integrated_autocorrelation_time(x) == tau
    assert diagnostics.effective_sample_size(x) == pytest.approx(x.size / tau)


def test_anti_correlated_chain_is_estimated_from_above():
    coefficient = -0.5
    x = _long_ar1(coefficient)
    tau, window = diagnostics.integrated_autocorrelation_time(x, return_window=True)
    exact = (1 + coefficient) / (1 - coefficient)
    # The window stops the sum of rho(t) = r^t at an even lag; that partial sum
    # is what the estimator converges to, and it lies above the exact tau_int.
    partial = 1 + 2 * sum(coefficient**t for t in range(1, window + 1))
    sigma = partial * np.sqrt(2 * (2 * window + 1) / x.size)
    assert window % 2 == 0
    assert partial > exact
    assert abs(tau - partial) < 4 * sigma, (tau, partial, sigma)


@pytest.mark.parametrize(
    "coefficient, num_samples, num_chains",
    # Lengths that keep the bias (2W + 1) / N of errors^2 near 1.5%.
    [(0.0, 1_000, 2), (0.5, 2_000, 2), (0.9, 10_000, 1)],
)
def test_standard_error_matches_the_spread_of_repeated_means(
    coefficient, num_samples, num_chains
):
    num_repeats = 2_000
    x = _ar1(7, coefficient, num_samples, num_repeats * num_chains)
    repeats = x.reshape(num_samples, num_repeats, num_chains)
    means = repeats.mean(axis=(0, 2))
    errors = np.array(
        [diagnostics.standard_error(repeats[:, i]) for i in range(num_repeats)]
    )
    # The true mean is 0, so mean(means^2) estimates var(mean) with relative
    # standard deviation sqrt(2 / R) = 3.2% (the means are Gaussian). The
    # scatter of mean(errors^2) is ~10x smaller, and the bias of errors^2, at
    # most about (2W + 1) / N (< 2% here), stays under one of those sigmas.
    ratio = np.mean(means**2) / np.mean(errors**2)
    assert abs(ratio - 1) < 4 * np.sqrt(2 / num_repeats), ratio


def test_standard_error_is_the_windowed_autocovariance_sum():
    x = _long_ar1(0.5)[:4000, :8]
    tau = diagnostics.integrated_autocorrelation_time(x)
    centred = x - x.mean(axis=0)
    pooled_variance = (centred**2).mean()
    expected = np.sqrt(pooled_variance * tau / x.size)
    assert diagnostics.standard_error(x) == pytest.approx(expected, rel=1e-12)
    mean, error = diagnostics.mean_and_error(x)
    assert mean == pytest.approx(x.mean(), rel=1e-12)
    assert error == diagnostics.standard_error(x)


@pytest.mark.parametrize("num_samples", [4, 13, 50])
def test_autocorrelation_equals_the_direct_sum(num_samples):
    # The direct O(N^2) sum has no circular wrap to hide.
    x = np.random.default_rng(num_samples).standard_normal((num_samples, 3))
    centred = x - x.mean(axis=0)
    covariance = np.array(
        [
            (centred[: num_samples - t] * centred[t:]).sum(axis=0) / num_samples
            for t in range(num_samples)
        ]
    )
    np.testing.assert_allclose(
        diagnostics.autocorrelation(x, per_chain=True),
        covariance / covariance[0],
        rtol=0,
        atol=1e-12,
    )
    pooled = covariance.mean(axis=1)
    np.testing.assert_allclose(
        diagnostics.autocorrelation(x, max_lag=2), (pooled / pooled[0])[:3], atol=1e-12
    )


def test_one_dimensional_input_is_one_chain():
    x = _long_ar1(0.5)[:3000, 0]
    column = x[:, None]
    np.testing.assert_array_equal(
        diagnostics.autocorrelation(x), diagnostics.autocorrelation(column)
    )
    np.testing.assert_array_equal(
        diagnostics.autocorrelation(x, per_chain=True),
        diagnostics.autocorrelation(column, per_chain=True),
    )
    for fn in (
        diagnostics.integrated_autocorrelation_time,
        diagnostics.effective_sample_size,
        diagnostics.standard_error,
        diagnostics.mean_and_error,
    ):
        assert fn(x) == fn(column), fn.__name__
    charges = np.array([0.0, 1.0, 1.0, -1.0])
    assert diagnostics.tunneling_rate(charges) == diagnostics.tunneling_rate(
        charges[:, None]
    )


def test_jax_arrays_are_accepted():
    x = _long_ar1(0.5)[:2000, :4].astype(np.float32)
    assert diagnostics.integrated_autocorrelation_time(
        jnp.asarray(x)
    ) == diagnostics.integrated_autocorrelation_time(x)


@pytest.mark.parametrize("values", [[0.1, 0.1, 0.1], [0.0, 1.0, -2.0]])
def test_frozen_chains_never_decorrelate(values):
    # 0.1 is not exactly representable, so its mean can round away from it.
    x = np.tile(np.array(values), (50, 1))
    np.testing.assert_array_equal(diagnostics.autocorrelation(x), np.ones(50))
    np.testing.assert_array_equal(
        diagnostics.autocorrelation(x, per_chain=True), np.ones((50, 3))
    )
    tau, window = diagnostics.integrated_autocorrelation_time(x, return_window=True)
    assert tau == np.inf and window == 49
    assert diagnostics.effective_sample_size(x) == 0.0
    assert diagnostics.standard_error(x) == np.inf
    mean, error = diagnostics.mean_and_error(x)
    assert mean == pytest.approx(np.mean(values)) and error == np.inf
    assert diagnostics.tunneling_rate(np.rint(x)) == 0.0


def test_a_frozen_chain_adds_nothing_to_the_chain_average():
    moving = _long_ar1(0.5)[:3000, :2]
    x = np.concatenate([moving, np.full((3000, 1), 2.0)], axis=1)
    np.testing.assert_allclose(
        diagnostics.autocorrelation(x), diagnostics.autocorrelation(moving), atol=1e-12
    )
    rho = diagnostics.autocorrelation(x, max_lag=10, per_chain=True)
    np.testing.assert_array_equal(rho[:, 2], np.ones(11))
    assert diagnostics.integrated_autocorrelation_time(x) == pytest.approx(
        diagnostics.integrated_autocorrelation_time(moving), rel=1e-10
    )


def test_tunneling_rate_of_a_hand_made_sequence():
    charges = np.array([[0, 0], [1, 0], [1, -1], [-1, -1]])
    # |dQ| per chain: (1, 0, 2) and (0, 1, 0): 4 over 6 steps.
    assert diagnostics.tunneling_rate(charges) == pytest.approx(4 / 6)
    round_off = np.random.default_rng(0).uniform(-1e-4, 1e-4, charges.shape)
    assert diagnostics.tunneling_rate(
        charges.astype(np.float32) + round_off
    ) == pytest.approx(4 / 6)
    assert diagnostics.tunneling_rate([2, 2]) == 0.0


def test_tunneling_rate_rejects_non_integer_charges():
    with pytest.raises(ValueError, match="sine charge"):
        diagnostics.tunneling_rate([0.0, 0.3, 1.0])


@pytest.mark.parametrize(
    "x, match",
    [
        (np.float64(1.0), r"shape \(\)"),
        (np.zeros((5, 2, 2)), r"shape \(5, 2, 2\)"),
        (np.zeros(3), r"at least 4 samples"),
        (np.zeros((3, 8)), r"shape \(3, 8\)"),
        (np.zeros((10, 0)), r"shape \(10, 0\)"),
        (np.array([0.0, 1.0, np.nan, 2.0]), "1 non-finite"),
        (np.array([0.0, np.inf, 1.0, 2.0, -np.inf]), "2 non-finite"),
    ],
)
def test_bad_samples_are_named(x, match):
    for fn in (
        diagnostics.autocorrelation,
        diagnostics.integrated_autocorrelation_time,
        diagnostics.effective_sample_size,
        diagnostics.standard_error,
        diagnostics.mean_and_error,
    ):
        with pytest.raises(ValueError, match=match):
            fn(x)


def test_bad_arguments_are_named():
    x = np.random.default_rng(0).standard_normal((20, 2))
    for c in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="c must be"):
            diagnostics.integrated_autocorrelation_time(x, c=c)
        with pytest.raises(ValueError, match="c must be"):
            diagnostics.standard_error(x, c=c)
    for max_lag in (-1, 20, 1.5):
        with pytest.raises(ValueError, match="max_lag"):
            diagnostics.autocorrelation(x, max_lag=max_lag)
    with pytest.raises(ValueError, match="at least 2 samples"):
        diagnostics.tunneling_rate([1.0])
    with pytest.raises(ValueError, match="non-finite"):
        diagnostics.tunneling_rate([1.0, np.nan])


@pytest.mark.parametrize(
    "x",
    [
        # tau_int(2) = 1/2 > 2 / c: no even window stops the sum.
        [1.0, -1.0, 1.0, -1.0],
        # rho(1) + rho(2) = -3/4, so tau_int(2) < 0.
        [1.0, -1.0, -1.0, 1.0],
    ],
)
def test_too_short_chains_raise_rather_than_return_nonsense(x):
    with pytest.raises(ValueError, match="too few"):
        diagnostics.integrated_autocorrelation_time(x)
    with pytest.raises(ValueError, match="too few"):
        diagnostics.standard_error(x)
