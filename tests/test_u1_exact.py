"""Exact finite-volume results of 2D U(1), against independent computations.

The references here share no code with `u1_exact`: Bessel functions by
trapezoid quadrature of a periodic integrand (exponentially accurate), the
charge distribution of tiny lattices by repeated numerical convolution of
the von Mises density, and the infinite-volume limits.
"""

import numpy as np
import pytest

from l2hmc_jax.targets import u1_exact

BETAS = [0.05, 0.7, 2.0, 4.0, 9.0, 20.0]


def _bessel_by_quadrature(beta, orders):
    """``I_n(beta) e^-beta`` by the trapezoid rule on the period."""
    phi = 2 * np.pi * np.arange(4096) / 4096
    weight = np.exp(beta * (np.cos(phi) - 1))
    return (weight * np.cos(np.outer(orders, phi))).mean(axis=1)


def _von_mises_moments(beta):
    """``<cos>``, ``<phi^2>`` and ``<sin^2>`` of one von Mises(beta) angle."""
    num = 1 << 16
    h = 2 * np.pi / num
    phi = -np.pi + h * (np.arange(num) + 0.5)
    weight = np.exp(beta * (np.cos(phi) - 1))
    norm = weight.sum()
    return (
        (weight * np.cos(phi)).sum() / norm,
        (weight * phi**2).sum() / norm,
        (weight * np.sin(phi) ** 2).sum() / norm,
    )


@pytest.mark.parametrize("beta", BETAS)
def test_bessel_ratios_match_quadrature(beta):
    orders = np.arange(40)
    ratios, log_i0 = u1_exact.bessel_ratios(beta, len(orders))
    scaled = _bessel_by_quadrature(beta, orders)
    # Quadrature is accurate to about 1e-16 of I_0 in absolute terms.
    np.testing.assert_allclose(ratios, scaled / scaled[0], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(log_i0, beta + np.log(scaled[0]), rtol=1e-12)


@pytest.mark.parametrize("beta", BETAS)
def test_large_volume_reaches_the_infinite_volume_limits(beta):
    cos_mean, phi2_mean, sin2_mean = _von_mises_moments(beta)
    size = (64, 64)
    volume = 64 * 64
    # On 64 x 64 the comb orders n != 0 weigh (I_1/I_0)^4096 < 1e-40 for
    # every beta <= 20, so the limits hold to round-off.
    np.testing.assert_allclose(u1_exact.mean_plaquette(beta, size), cos_mean, 1e-10)
    np.testing.assert_allclose(
        u1_exact.mean_charge_squared(beta, size),
        volume * phi2_mean / (4 * np.pi**2),
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        u1_exact.mean_sin_charge_squared(beta, size),
        volume * sin2_mean / (4 * np.pi**2),
        rtol=1e-9,
    )


def _charge_distribution_by_convolution(beta, volume, h=1e-3):
    """``P(Q)`` as the density of a sum of V von Mises angles at ``2 pi Q``.

    Midpoint cells end exactly at +-pi, so the error is O(h^2).
    """
    num = int(round(2 * np.pi / h))
    h = 2 * np.pi / num
    phi = -np.pi + h * (np.arange(num) + 0.5)
    single = np.exp(beta * (np.cos(phi) - 1))
    density = single
    for _ in range(volume - 1):
        density = np.convolve(density, single) * h
    s = -volume * np.pi + volume * h / 2 + h * np.arange(len(density))
    charges = np.arange(-(volume // 2), volume // 2 + 1)
    values = np.interp(2 * np.pi * charges, s, density)
    return charges, values / values.sum()


@pytest.mark.parametrize(
    "beta, size", [(0.3, (2, 2)), (1.0, (2, 2)), (2.0, (2, 3)), (4.0, (3, 2))]
)
def test_charge_distribution_of_tiny_lattices_by_convolution(beta, size):
    volume = size[0] * size[1]
    charges, reference = _charge_distribution_by_convolution(beta, volume)
    exact = u1_exact.charge_probability(beta, size, charges)
    np.testing.assert_allclose(exact, reference, atol=5e-5)
    np.testing.assert_allclose(
        u1_exact.mean_charge_squared(beta, size),
        (charges**2 * reference).sum(),
        atol=2e-4,
    )


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("size", [(2, 2), (3, 5), (8, 8), (16, 16)])
def test_charge_distribution_is_normalised_and_gives_q_squared(beta, size):
    volume = size[0] * size[1]
    charges = np.arange(-(volume // 2), volume // 2 + 1)
    p = u1_exact.charge_probability(beta, size, charges)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(p, p[::-1], atol=1e-14)
    # Two independent routes to <Q^2>: the comb sum of phi moments and the
    # second moment of the distribution.
    q2 = u1_exact.mean_charge_squared(beta, size)
    np.testing.assert_allclose((charges**2 * p).sum(), q2, rtol=1e-8, atol=1e-12)


def test_results_depend_on_the_volume_only():
    for f in (
        u1_exact.mean_plaquette,
        u1_exact.mean_charge_squared,
        u1_exact.mean_sin_charge_squared,
    ):
        assert f(3.0, (4, 6)) == pytest.approx(f(3.0, (3, 8)), rel=1e-13)
        assert f(3.0, (4, 6)) != pytest.approx(f(3.0, (4, 4)), rel=1e-3)


def test_charge_beyond_half_the_volume_is_impossible():
    assert u1_exact.charge_probability(0.1, (2, 2), 3) == 0.0
    assert u1_exact.charge_probability(0.1, (2, 2), [[0, 5]]).shape == (1, 2)


def test_freezing_at_large_beta_on_a_small_lattice():
    # Q = 1 on 2 x 2 costs an action of about 4 beta (each plaquette pi/2).
    q2 = u1_exact.mean_charge_squared(20.0, (2, 2))
    assert 0 <= q2 < 1e-12
    assert u1_exact.charge_probability(20.0, (2, 2), 0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: u1_exact.mean_plaquette(-1.0, (4, 4)), "beta"),
        (lambda: u1_exact.mean_charge_squared(0.0, (4, 4)), "beta"),
        (lambda: u1_exact.mean_sin_charge_squared(float("nan"), (4, 4)), "beta"),
        (lambda: u1_exact.mean_plaquette(1.0, (1, 4)), "size"),
        (lambda: u1_exact.mean_plaquette(1.0, (4,)), "size"),
        (lambda: u1_exact.charge_probability(1.0, (4, 4), 0.5), "q"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
