"""The four toy densities of Levy, Hoffman and Sohl-Dickstein (2018).

Each function returns a euclidean `Target` whose log-density, known up to an
additive constant, maps over any leading batch axes. The exact mean and
covariance of each density travel with it in ``Target.params`` as nested
tuples of floats, so that the target stays hashable (a static argument of
`jax.jit`); `exact_moments` reads them back as arrays.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from l2hmc_jax.targets import base

Array = jax.Array

# Rough-well quadrature. The tails are cut where the density has fallen below
# exp(-40) of its peak (the cos term shifts the log-density by at most
# 2 eta). The integrand is entire and its Fourier weights at the multiples
# n / eta of the cos frequency fall like I_n(eta), so a grid with 32 points
# per period 2 pi eta, and never coarser than 0.25 for the Gaussian envelope,
# makes the trapezoid rule exact to double precision.
_TAIL_LOG_RATIO = 40.0
_POINTS_PER_PERIOD = 32
_MAX_SPACING = 0.25
# Grid points summed at once: bounds the memory a very small eta needs.
_CHUNK = 1 << 20


def exact_moments(target: base.Target) -> tuple[np.ndarray, np.ndarray]:
    """The exact mean and covariance of a toy target.

    Parameters
    ----------
    target
        A `Target` of this module, or any target whose ``params`` hold
        ``"mean"`` and ``"covariance"``.

    Returns
    -------
    mean
        float64 array of shape ``(dim,)``.
    covariance
        float64 array of shape ``(dim, dim)``.
    """
    params = dict(target.params)
    if "mean" not in params or "covariance" not in params:
        names = tuple(params)
        raise ValueError(f"target with params {names} carries no exact moments")
    mean = np.asarray(params["mean"], dtype=np.float64)
    covariance = np.asarray(params["covariance"], dtype=np.float64)
    return mean, covariance


def ill_conditioned_gaussian(dim: int = 50) -> base.Target:
    """A zero-mean Gaussian with variances log-spaced from 1e-2 to 1e2.

    Parameters
    ----------
    dim
        Number of dimensions; the variances are ``np.logspace(-2, 2, dim)``
        along the coordinate axes.

    Returns
    -------
    Target
        Records ``x0`` (the narrowest direction, standard deviation 0.1, which
        bounds the stable step size), ``x{dim-1}`` (the widest, standard
        deviation 10, the slowest to explore) and ``radius_squared``
        ``|x|^2``, whose exact mean is the sum of the variances. Three scalars
        instead of every coordinate keep traces small.

    Notes
    -----
    ``params`` holds the full ``dim x dim`` covariance, which is cheap at the
    default size but grows as ``dim**2``.
    """
    if isinstance(dim, bool) or int(dim) != dim or int(dim) < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    dim = int(dim)
    variances = np.logspace(-2, 2, dim)
    last = f"x{dim - 1}"

    def logdensity_fn(x):
        _check_event(x, dim)
        precision = jnp.asarray(1.0 / variances, x.dtype)
        return -0.5 * (precision * x**2).sum(axis=-1)

    def observables_fn(x):
        return {
            "x0": x[..., 0],
            last: x[..., -1],
            "radius_squared": (x**2).sum(axis=-1),
        }

    params = _moment_params(
        "ill_conditioned_gaussian", np.zeros(dim), np.diag(variances), dim=dim
    )
    return base.make_target(
        logdensity_fn, (dim,), observables_fn=observables_fn, params=params
    )


def strongly_correlated_gaussian() -> base.Target:
    """A 2-d zero-mean Gaussian with variances 100 and 0.01 rotated by pi/4.

    The covariance is ``R diag(100, 0.01) R^T`` with ``R`` the rotation by
    pi/4: the wide direction is the diagonal ``x0 = x1``, and each coordinate
    has variance 50.005.

    Returns
    -------
    Target
        Records ``x0`` and ``x1``.
    """
    angle = np.pi / 4
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    )
    variances = np.array([100.0, 0.01])
    covariance = _symmetric(rotation @ np.diag(variances) @ rotation.T)
    precision_matrix = _symmetric(rotation @ np.diag(1.0 / variances) @ rotation.T)

    def logdensity_fn(x):
        _check_event(x, 2)
        precision = jnp.asarray(precision_matrix, x.dtype)
        return -0.5 * jnp.einsum("...i,ij,...j->...", x, precision, x)

    params = _moment_params("strongly_correlated_gaussian", np.zeros(2), covariance)
    return base.make_target(logdensity_fn, (2,), params=params)


def rough_well(eta: float = 0.01) -> base.Target:
    """The 2-d rough well ``U(x) = |x|^2 / 2 + eta sum_i cos(x_i / eta)``.

    The log-density is ``-U``. Its gradient ``-x + sin(x / eta)`` oscillates
    with period ``2 pi eta`` and amplitude 1, which a leapfrog integrator
    must resolve although the density itself differs little from N(0, I).

    Parameters
    ----------
    eta
        Scale of the roughness, positive.

    Returns
    -------
    Target
        Records ``x0`` and ``x1``.

    Notes
    -----
    The density factorises over the coordinates, each
    ``p(x_i) ~ exp(-x_i^2 / 2 - eta cos(x_i / eta))``, even in ``x_i``: the
    mean is zero and the covariance is ``sigma^2 I`` with ``sigma^2`` found
    by trapezoid quadrature on a grid that resolves the period. Expanding
    ``exp(-eta cos)`` in Bessel functions shows
    ``sigma^2 - 1 = O(exp(-1 / (2 eta^2)))``; at the default eta = 0.01 the
    moments equal those of N(0, I) to double precision, while larger eta
    (0.3 and up) move them visibly.
    """
    value = float(eta)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"eta must be finite and positive, got {eta!r}")
    eta = value

    def logdensity_fn(x):
        _check_event(x, 2)
        return -0.5 * (x**2).sum(axis=-1) - eta * jnp.cos(x / eta).sum(axis=-1)

    variance = _rough_well_variance(eta)
    params = _moment_params("rough_well", np.zeros(2), variance * np.eye(2), eta=eta)
    return base.make_target(logdensity_fn, (2,), params=params)


def mixture_of_gaussians() -> base.Target:
    """An equal-weight mixture of N((-2, 0), 0.1 I) and N((2, 0), 0.1 I).

    The modes are about 6 standard deviations of either component apart
    along ``x0``, which HMC rarely crosses. The exact mean is zero and the
    covariance is ``diag(4 + 0.1, 0.1)``: the component variance plus the
    spread of the component means.

    Returns
    -------
    Target
        Records ``x0`` and ``x1``.
    """
    means = np.array([[-2.0, 0.0], [2.0, 0.0]])
    variance = 0.1

    def logdensity_fn(x):
        _check_event(x, 2)
        mu = jnp.asarray(means, x.dtype)
        components = -0.5 * ((x[..., None, :] - mu) ** 2).sum(axis=-1) / variance
        # Far from one mode its component underflows; logsumexp keeps the
        # other one exact instead of taking the log of a rounded sum.
        return jax.nn.logsumexp(components, axis=-1) - math.log(2.0)

    covariance = variance * np.eye(2) + np.cov(means.T, bias=True)
    params = _moment_params("mixture_of_gaussians", means.mean(axis=0), covariance)
    return base.make_target(logdensity_fn, (2,), params=params)


def _check_event(x: Array, dim: int) -> None:
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(f"positions must have shape [..., {dim}], got {x.shape}")


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    # Rounding in the rotation leaves the two off-diagonal entries a few ulps
    # apart; a covariance must be exactly symmetric.
    return 0.5 * (matrix + matrix.T)


def _moment_params(name: str, mean, covariance, **extra):
    mean = tuple(float(m) for m in mean)
    covariance = tuple(tuple(float(c) for c in row) for row in covariance)
    return (
        (("name", name),)
        + tuple(extra.items())
        + (("mean", mean), ("covariance", covariance))
    )


def _rough_well_variance(eta: float, points_per_period: int = _POINTS_PER_PERIOD):
    """``E[x^2]`` under ``p(x) ~ exp(-x^2 / 2 - eta cos(x / eta))``."""
    half_width = max(12.0, math.sqrt(2 * (_TAIL_LOG_RATIO + 2 * eta)))
    spacing = min(2 * math.pi * eta / points_per_period, _MAX_SPACING)
    num_points = 2 * math.ceil(half_width / spacing) + 1
    spacing = 2 * half_width / (num_points - 1)
    # Weights are taken relative to the largest log-density seen so far, and
    # the sums rescaled when it grows, so that no eta overflows or underflows.
    shift = -math.inf
    mass = second_moment = 0.0
    for start in range(0, num_points, _CHUNK):
        index = np.arange(start, min(start + _CHUNK, num_points))
        x = -half_width + spacing * index
        log_weights = -0.5 * x**2 - eta * np.cos(x / eta)
        new_shift = max(shift, float(log_weights.max()))
        rescale = math.exp(shift - new_shift)
        weights = np.exp(log_weights - new_shift)
        shift = new_shift
        # The end points weigh exp(-40) of the peak, so the trapezoid rule's
        # half weights there are dropped, and the common spacing cancels.
        mass = mass * rescale + weights.sum()
        second_moment = second_moment * rescale + (x**2 * weights).sum()
    return second_moment / mass


# The four densities by name, for scripts that pick one from a flag.
TARGETS = {
    "ill_conditioned_gaussian": ill_conditioned_gaussian,
    "strongly_correlated_gaussian": strongly_correlated_gaussian,
    "rough_well": rough_well,
    "mixture_of_gaussians": mixture_of_gaussians,
}
