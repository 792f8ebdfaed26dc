"""Exact finite-volume results of 2D U(1) lattice gauge theory on a torus.

On an ``L0 x L1`` periodic lattice with ``V = L0 * L1`` plaquettes, the
wrapped plaquette angles ``phi_i`` are ``V`` independent von Mises(beta)
angles conditioned on ``sum_i phi_i = 2 pi Q`` for an integer ``Q``: the
weight is ``prod_i exp(beta cos phi_i)`` times the periodic delta comb
``sum_n exp(i n sum_i phi_i)``. Every expectation value below is therefore a
sum over ``n`` of products of one-angle integrals

    int dphi / 2pi exp(beta cos phi) g(phi) exp(i n phi),

which for ``g = 1, cos, sin, phi, phi^2`` are finite sums of modified Bessel
functions ``I_n(beta)``. The sum over ``n`` is weighted by
``w_n = I_n^V / sum_m I_m^V``, computed from ratios ``I_n / I_0 <= 1`` so that
no V-th power overflows.

The results depend on the volume only, not on ``L0`` and ``L1`` separately.
As ``V`` grows, ``w_n -> delta_n0`` and the infinite-volume limits follow:
``<cos P> -> I_1 / I_0`` and ``<Q^2> / V -> <phi^2>_vM / (4 pi^2)``.

Everything here is plain numpy in float64, evaluated eagerly.
"""

import math

import numpy as np

from l2hmc_jax.targets.u1 import check_beta, check_size

# Terms of the n-sums whose weight (I_n / I_0)^V falls below this are dropped;
# the results are asked to 1e-8 relative or 1e-12 absolute.
_WEIGHT_FLOOR = 1e-30
# Bessel ratios below this are dropped from the phi and phi^2 series.
_BESSEL_FLOOR = 1e-40
# The far tail of the theta-vacuum sum is cut where it falls below this.
_TAIL_FLOOR = 1e-16
_MAX_BETA = 1e3
_CHUNK = 1 << 12


def _check(beta, size) -> tuple[float, int]:
    check_beta(beta)
    beta = float(beta)
    if beta > _MAX_BETA:
        raise ValueError(f"beta must be at most {_MAX_BETA}, got {beta!r}")
    l0, l1 = check_size(size)
    return beta, l0 * l1


def bessel_ratios(beta: float, num_orders: int) -> tuple[np.ndarray, float]:
    """``I_n(beta) / I_0(beta)`` for ``n = 0 .. num_orders - 1``, and ``log I_0``.

    The ratios ``r_n = I_n / I_(n-1)`` satisfy ``r_n = 1 / (2n / beta +
    r_(n+1))``, a backward recurrence that is stable (it computes the minimal
    solution) and started far enough above the last order that the start
    value ``0`` has no effect in double precision. ``log I_0`` then follows
    from ``exp(beta) = I_0 + 2 sum_(n >= 1) I_n``.
    """
    check_beta(beta)
    beta = float(beta)
    start = int(num_orders + 2 * beta + 60)
    ratios = np.empty(start + 1)
    r = 0.0
    for n in range(start, 0, -1):
        r = 1.0 / (2.0 * n / beta + r)
        ratios[n] = r
    ratios[0] = 1.0
    # cumprod underflows to exact zeros far out, which is what we want.
    relative = np.cumprod(ratios)
    log_i0 = beta - math.log1p(2.0 * relative[1:].sum())
    return relative[:num_orders], log_i0


class _Sums:
    """The Bessel ratios and n-weights shared by every observable."""

    def __init__(self, beta: float, volume: int):
        self.beta, self.volume = beta, volume
        # Orders large enough that (I_n/I_0)^V and I_n/I_0 are both negligible.
        num_orders = 64
        while True:
            i, self.log_i0 = bessel_ratios(beta, 3 * num_orders + 2)
            if i[num_orders] < _BESSEL_FLOOR:
                break
            num_orders *= 2
        self.i = i
        with np.errstate(divide="ignore"):
            log_w = volume * np.log(i[:num_orders])
        keep = log_w > math.log(_WEIGHT_FLOOR)
        self.n = np.arange(num_orders)[keep]
        # Orders n and -n weigh the same; count n > 0 twice.
        w = np.exp(log_w[keep]) * np.where(self.n > 0, 2.0, 1.0)
        self.w = w / w.sum()

    def ratio(self, n: np.ndarray) -> np.ndarray:
        """``I_|n| / I_0`` for integer arrays ``n``."""
        return self.i[np.abs(n)]

    def phi_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """``c_n / I_n`` and ``b_n / I_n`` for the kept orders ``n``.

        ``c_n = int dphi/2pi e^(beta cos phi) phi sin(n phi)`` and
        ``b_n = int dphi/2pi e^(beta cos phi) phi^2 cos(n phi)``, from the
        Fourier series ``phi = sum_k 2 (-1)^(k+1) sin(k phi) / k`` and
        ``phi^2 = pi^2 / 3 + sum_k 4 (-1)^k cos(k phi) / k^2`` on (-pi, pi).
        """
        # k - n runs past num_orders, where I_(k-n) / I_0 < 1e-40.
        k = np.arange(1, len(self.i) - self.n.max())[:, None]
        n = self.n[None, :]
        sign = np.where(k % 2 == 1, 1.0, -1.0)
        lower, upper = self.ratio(k - n), self.ratio(k + n)
        c = (sign * (lower - upper) / k).sum(axis=0)
        b = np.pi**2 / 3 * self.ratio(self.n) - 2 * (sign * (lower + upper) / k**2).sum(
            axis=0
        )
        i_n = self.ratio(self.n)
        return c / i_n, b / i_n


def mean_plaquette(beta, size) -> float:
    """Exact ``<cos P>`` on an ``L0 x L1`` torus.

    ``<cos P> = sum_n I_n^(V-1) I_n' / sum_n I_n^V`` with
    ``I_n' = (I_(n-1) + I_(n+1)) / 2``.

    Parameters
    ----------
    beta
        Inverse coupling, positive (at most 1000).
    size
        ``(L0, L1)``, each at least 2.

    Returns
    -------
    float
    """
    sums = _Sums(*_check(beta, size))
    n = sums.n
    derivative = 0.5 * (sums.ratio(n - 1) + sums.ratio(n + 1)) / sums.ratio(n)
    return float((sums.w * derivative).sum())


def mean_charge_squared(beta, size) -> float:
    """Exact ``<Q^2>`` of the integer charge on an ``L0 x L1`` torus.

    ``Q = sum_i phi_i / 2pi``, so ``4 pi^2 <Q^2> = V <phi^2> + V (V - 1)
    <phi_1 phi_2>`` under the constrained measure; equivalently
    ``-Z''(0) / Z(0)`` of the theta-vacuum partition function.

    Parameters
    ----------
    beta
        Inverse coupling, positive (at most 1000).
    size
        ``(L0, L1)``, each at least 2.

    Returns
    -------
    float
    """
    sums = _Sums(*_check(beta, size))
    volume = sums.volume
    c, b = sums.phi_moments()
    # The comb term of order n contributes (i c_n)^2 to <phi_1 phi_2>.
    terms = volume * b - volume * (volume - 1) * c**2
    return max(float((sums.w * terms).sum()) / (4 * np.pi**2), 0.0)


def mean_sin_charge_squared(beta, size) -> float:
    """Exact ``<Q_sin^2>``, ``Q_sin = sum_n sin P(n) / 2pi``, on an ``L0 x L1`` torus.

    Uses ``int dphi/2pi e^(beta cos phi) sin(phi) e^(i n phi) = i n I_n / beta``
    and ``int dphi/2pi e^(beta cos phi) sin^2(phi) cos(n phi) = I_n / 2 -
    (I_(n-2) + I_(n+2)) / 4``.

    Parameters
    ----------
    beta
        Inverse coupling, positive (at most 1000).
    size
        ``(L0, L1)``, each at least 2.

    Returns
    -------
    float
    """
    beta, volume = _check(beta, size)
    sums = _Sums(beta, volume)
    n = sums.n
    sin2 = 0.5 - 0.25 * (sums.ratio(n - 2) + sums.ratio(n + 2)) / sums.ratio(n)
    terms = volume * sin2 - volume * (volume - 1) * (n / beta) ** 2
    return max(float((sums.w * terms).sum()) / (4 * np.pi**2), 0.0)


def charge_probability(beta, size, q) -> np.ndarray:
    """Exact probability ``P(Q = q)`` of the integer charge on an ``L0 x L1`` torus.

    ``Z(theta) = sum_n f(n + theta / 2pi)^V`` with ``f(k) = int dphi/2pi
    e^(beta cos phi) cos(k phi) = sum_j I_j sinc(k - j)``. Since ``|Q| <=
    V / 2``, ``Z(theta)`` is a trigonometric polynomial of degree at most
    ``V / 2``, and its Fourier coefficients ``P(Q) Z(0)`` follow exactly
    from ``V + 1`` values of theta.

    Parameters
    ----------
    beta
        Inverse coupling, positive (at most 1000).
    size
        ``(L0, L1)``, each at least 2.
    q
        An integer or an array of integers.

    Returns
    -------
    numpy.ndarray
        ``P(Q = q)``, of the shape of ``q`` (float64).
    """
    beta, volume = _check(beta, size)
    q = np.asarray(q)
    if q.dtype.kind not in "iu" and not (
        q.dtype.kind == "f" and np.all(q == np.round(q))
    ):
        raise ValueError(f"q must be integers, got {q!r}")
    z = _theta_partition_function(beta, volume)
    num_thetas = len(z)
    # P(Q) = (1 / M) sum_j Z(theta_j) cos(theta_j Q) / Z(0), theta_j = 2 pi j / M.
    theta = 2 * np.pi * np.arange(num_thetas) / num_thetas
    qs = q.astype(np.float64).reshape(-1)
    p = (z[None, :] * np.cos(np.outer(qs, theta))).sum(axis=1) / num_thetas
    p = np.where(np.abs(qs) <= volume / 2, np.maximum(p, 0.0), 0.0)
    return p.reshape(q.shape)


def _theta_partition_function(beta: float, volume: int) -> np.ndarray:
    """``Z(theta_j) / Z(0)`` at ``theta_j = 2 pi j / M``, ``M = V + 1``."""
    sums = _Sums(beta, volume)
    # f(k) / I_0 = sum_j (I_j / I_0) sinc(k - j); orders whose ratio is below
    # 1e-20 change f^V by less than V * 1e-20.
    num_orders = int(np.count_nonzero(sums.i > 1e-20))
    orders = np.arange(1 - num_orders, num_orders)
    weights = sums.ratio(orders)
    num_thetas = volume + 1
    delta = np.arange(num_thetas) / num_thetas

    def block(n):
        k = n[:, None] + delta[None, :]
        f = np.zeros_like(k)
        for order, weight in zip(orders, weights, strict=True):
            f += weight * np.sinc(k - order)
        return f**volume

    # Far out, f(k) / I_0 -> e^-beta sin(pi k) / (pi k I_0), whose V-th powers
    # summed over |n| > N stay below _TAIL_FLOOR once N exceeds this bound.
    log_tail = -beta - sums.log_i0 - math.log(np.pi)
    log_bound = (volume * log_tail - math.log(_TAIL_FLOOR * (volume - 1) / 2)) / (
        volume - 1
    )
    min_n = max(2 * num_orders, math.exp(min(log_bound, math.log(1e7))))
    z = block(np.zeros(1, int))[0]
    lo, width = 1, 8
    while True:
        n = np.arange(lo, lo + width)
        powers = block(np.concatenate([n, -n]))
        z += powers.sum(axis=0)
        lo += width
        if lo > min_n and np.abs(powers).max() < _TAIL_FLOOR:
            break
        width = min(2 * width, _CHUNK)
    return z / z[0]
