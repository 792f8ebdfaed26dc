"""Estimators of sampler quality: autocorrelation, tau_int, ESS, errors.

Every array argument holds one scalar observable with shape
``(num_samples, num_chains)``: samples along axis 0, independent chains along
axis 1, as `l2hmc_jax.sample` records them. A 1-D array is one chain and gives
exactly what ``x[:, None]`` gives. Thermalisation must be discarded before the
call. The estimators run on the host in float64 NumPy (JAX arrays are
accepted and copied); they measure finished traces and are not meant for
`jax.jit`.

The conventions are those of Sokal's lecture notes ("Monte Carlo methods in
statistical mechanics: foundations and new algorithms", 1996) and of Madras
and Sokal (J. Stat. Phys. 50, 109, 1988), with ``tau_int = 1`` for independent
samples, so that ``N / tau_int`` counts effectively independent ones.
"""

import math

import numpy as np

__all__ = [
    "autocorrelation",
    "effective_sample_size",
    "integrated_autocorrelation_time",
    "mean_and_error",
    "standard_error",
    "tunneling_rate",
]

# Below this the window search has no even lag to stop at and any error bar is
# meaningless.
_MIN_SAMPLES = 4

# Integer charges computed in float32 are off by round-off only; a value this
# far from an integer means a non-integer observable (the sine charge, say).
_CHARGE_TOLERANCE = 0.1


def autocorrelation(x, max_lag: int | None = None, *, per_chain: bool = False):
    """Normalised autocorrelation function, averaged over chains by default.

    With ``y_c(s) = x_c(s) - xbar_c`` the samples of chain ``c`` less that
    chain's mean, the autocovariance at lag ``t`` is::

        C_c(t) = (1 / N) sum_{s=0}^{N-1-t} y_c(s) y_c(s + t)

    computed for all lags at once with a zero-padded FFT, so that the circular
    correlation of the FFT equals this linear one.

    Parameters
    ----------
    x
        Samples, ``(num_samples, num_chains)`` or ``(num_samples,)``.
    max_lag
        Largest lag returned, ``0 <= max_lag < num_samples``; all lags by
        default.
    per_chain
        Return one function per chain instead of the chain average.

    Returns
    -------
    rho
        ``rho(t)`` for ``t = 0, ..., max_lag``: shape ``(max_lag + 1,)``, or
        ``(max_lag + 1, num_chains)`` with ``per_chain=True``. ``rho(0) = 1``.

    Notes
    -----
    The chain average normalises the mean autocovariance::

        rho(t) = sum_c C_c(t) / sum_c C_c(0),

    which weights each chain by its variance: the ratio of averages has a
    smaller variance than the average of the per-chain ratios, and is the
    function whose window sum gives the error of the grand mean (see
    `standard_error`). A chain whose values are all equal never decorrelates;
    its per-chain function is ``rho(t) = 1`` for every lag (the limit of ever
    slower chains) and it adds nothing to the chain average. If every chain is
    constant the chain average is 1 for every lag too.

    The ``1 / N`` normalisation (rather than ``1 / (N - t)``) keeps the
    estimate a positive semi-definite sequence and small at large lags, at a
    bias of order ``t / N``. Subtracting each chain's own mean biases
    ``C_c(t)`` by about ``-tau_int C(0) / N``. Both are negligible for chains
    much longer than ``tau_int``. Because each chain is centred on its own
    mean, chains stuck in different modes (different topological sectors) look
    decorrelated; check them with `tunneling_rate`.
    """
    x = _as_chains(x)
    num_samples = x.shape[0]
    if max_lag is None:
        max_lag = num_samples - 1
    if (
        isinstance(max_lag, bool)
        or int(max_lag) != max_lag
        or not 0 <= max_lag < num_samples
    ):
        raise ValueError(
            f"max_lag must be an integer in [0, {num_samples - 1}], got {max_lag!r}"
        )
    autocovariance = _autocovariance(x)[: int(max_lag) + 1]
    if per_chain:
        variance = autocovariance[0]
        moving = variance > 0
        rho = np.ones_like(autocovariance)
        rho[:, moving] = autocovariance[:, moving] / variance[moving]
        return rho
    pooled = autocovariance.mean(axis=1)
    if pooled[0] == 0:
        return np.ones_like(pooled)
    return pooled / pooled[0]


def integrated_autocorrelation_time(x, c: float = 5.0, *, return_window: bool = False):
    """Integrated autocorrelation time with Sokal's automatic window.

    The chain-averaged autocorrelation ``rho(t)`` (see `autocorrelation`) is
    summed up to a window ``W``::

        tau_int(W) = 1 + 2 sum_{t=1}^{W} rho(t),

    and ``W`` is the smallest even lag with ``W >= c tau_int(W)``.

    Parameters
    ----------
    x
        Samples, ``(num_samples, num_chains)`` or ``(num_samples,)``.
    c
        Window constant; about 5 when ``rho`` decays roughly exponentially
        (the truncated tail is then of order ``exp(-c)``).
    return_window
        Also return ``W``.

    Returns
    -------
    tau_int
        A float: 1 for independent samples, ``(1 + r) / (1 - r)`` for an AR(1)
        process with coefficient ``r``; ``inf`` if every chain is constant, as
        such a trace never decorrelates.
    window
        ``W``, only with ``return_window=True``; ``num_samples - 1`` when
        ``tau_int`` is ``inf``.

    Raises
    ------
    ValueError
        If no window satisfies the condition or ``tau_int(W) <= 0``; either
        happens only for chains far too short for the estimate.

    Notes
    -----
    The statistical error is, for ``tau_int << W << N`` (Madras and Sokal)::

        var(tau_int) ~= 2 (2 W + 1) / (N M) tau_int**2,

    with ``N`` samples in each of ``M`` chains; subtracting each chain's mean
    biases ``tau_int`` low, by up to about ``(2 W + 1) / N`` relative. The
    estimate is trustworthy when ``N`` is a few hundred ``tau_int`` or more; a
    window that is a sizeable fraction of ``N`` means the chains are too
    short.

    Only even windows are tried, so that the ``rho(t)`` enter in pairs. For
    positively correlated samples this moves ``W`` by at most one lag. For
    anti-correlated ones (``rho(1) < 0``, as HMC with long trajectories
    gives), partial sums up to odd lags can fall to zero or below while the
    condition already holds; for a reversible chain ``rho(2k) >= 0``, and
    partial sums up to even lags approach ``tau_int`` from above instead. The
    window then scales with ``tau_int``, which is small, rather than with the
    decay time of ``|rho(t)|``: the estimate errs on the large side by the
    truncated tail.
    """
    c = _positive_float("c", c)
    x = _as_chains(x)
    tau, window = _tau_and_window(_autocovariance(x).mean(axis=1), c)
    if return_window:
        return tau, window
    return tau


def effective_sample_size(x, c: float = 5.0) -> float:
    """Effective number of independent samples, ``N M / tau_int``.

    Parameters
    ----------
    x
        Samples, ``(num_samples, num_chains)`` or ``(num_samples,)``.
    c
        Window constant of `integrated_autocorrelation_time`.

    Returns
    -------
    ess
        ``num_samples * num_chains / tau_int``; 0 if every chain is constant.
    """
    c = _positive_float("c", c)
    x = _as_chains(x)
    tau, _ = _tau_and_window(_autocovariance(x).mean(axis=1), c)
    return x.size / tau


def standard_error(x, c: float = 5.0) -> float:
    """Standard error of the grand mean of correlated chains.

    For ``N`` samples in each of ``M`` independent chains::

        stderr = sqrt(C(0) tau_int / (N M)),

    with ``C(0)`` the pooled variance (the mean over chains of each chain's
    variance about its own mean) and ``tau_int`` from
    `integrated_autocorrelation_time`. Equivalently ``stderr**2`` is the
    windowed sum ``sum_{|t| <= W} C(t) / (N M)`` of the pooled autocovariance.

    Parameters
    ----------
    x
        Samples, ``(num_samples, num_chains)`` or ``(num_samples,)``.
    c
        Window constant of `integrated_autocorrelation_time`.

    Returns
    -------
    stderr
        A float; ``inf`` if every chain is constant: a sampler that never
        moved says nothing about the spread of the observable.

    Notes
    -----
    Like ``tau_int``, ``stderr**2`` is biased low by up to about
    ``(2 W + 1) / N`` relative, from subtracting each chain's mean.
    """
    c = _positive_float("c", c)
    return _standard_error(_as_chains(x), c)


def mean_and_error(x, c: float = 5.0) -> tuple[float, float]:
    """Grand mean and its `standard_error`.

    Parameters
    ----------
    x
        Samples, ``(num_samples, num_chains)`` or ``(num_samples,)``.
    c
        Window constant of `integrated_autocorrelation_time`.

    Returns
    -------
    mean
        Mean over all samples and chains.
    stderr
        As `standard_error` returns it.
    """
    c = _positive_float("c", c)
    x = _as_chains(x)
    return float(x.mean()), _standard_error(x, c)


def tunneling_rate(charges) -> float:
    """Mean absolute change of the topological charge per recorded step.

    ::

        rate = < |Q(i + 1) - Q(i)| >,

    averaged over the ``N - 1`` steps and over chains. With a thinned trace a
    "step" is the interval between recorded samples.

    Parameters
    ----------
    charges
        Integer charges ``Q``, ``(num_samples, num_chains)`` or
        ``(num_samples,)``. Float input is rounded to the nearest integer
        first, so that round-off in a float32 charge cannot count as motion.

    Returns
    -------
    rate
        A float, 0 for chains that never change sector.

    Raises
    ------
    ValueError
        If a value is more than 0.1 from an integer: the sine charge, for
        instance, is not an integer charge.
    """
    charges = _as_chains(charges, "charges", min_samples=2)
    rounded = np.rint(charges)
    offset = np.abs(charges - rounded).max()
    if offset > _CHARGE_TOLERANCE:
        raise ValueError(
            f"charges must be integers; a value is {offset:.3g} from the nearest "
            "integer (pass the integer charge, not the sine charge)"
        )
    return float(np.abs(np.diff(rounded, axis=0)).mean())


def _standard_error(x: np.ndarray, c: float) -> float:
    pooled = _autocovariance(x).mean(axis=1)
    if pooled[0] == 0:
        return math.inf
    tau, _ = _tau_and_window(pooled, c)
    return math.sqrt(pooled[0] * tau / x.size)


def _tau_and_window(pooled: np.ndarray, c: float) -> tuple[float, int]:
    num_samples = pooled.shape[0]
    if pooled[0] == 0:
        return math.inf, num_samples - 1
    # taus[w - 1] is tau_int(w).
    taus = 1.0 + 2.0 * np.cumsum(pooled[1:] / pooled[0])
    windows = np.arange(2, num_samples, 2)
    stops = windows >= c * taus[windows - 1]
    # Centred data sum to zero over all lags (tau_int(N - 1) = 0), so only
    # chains that are short next to tau_int reach the end without a stop.
    if not stops.any():
        raise ValueError(
            f"no window W < {num_samples} has W >= c tau_int(W) (c = {c}): "
            f"{num_samples} samples per chain are too few to estimate tau_int"
        )
    window = int(windows[np.argmax(stops)])
    tau = float(taus[window - 1])
    if not tau > 0:
        raise ValueError(
            f"tau_int({window}) = {tau:.3g} is not positive: {num_samples} samples "
            "per chain are too few to estimate tau_int"
        )
    return tau, window


def _autocovariance(x: np.ndarray) -> np.ndarray:
    num_samples = x.shape[0]
    centred = x - x.mean(axis=0)
    # The mean of equal values can round away from them; a chain that never
    # moves must give exactly zero, not round-off normalised to order one.
    centred[:, np.ptp(x, axis=0) == 0] = 0.0
    # At least 2N - 1 points keep lag t from wrapping onto lag N - t.
    num_fft = 1 << (2 * num_samples - 2).bit_length()
    spectrum = np.fft.rfft(centred, n=num_fft, axis=0)
    power = spectrum.real**2 + spectrum.imag**2
    return np.fft.irfft(power, n=num_fft, axis=0)[:num_samples] / num_samples


def _as_chains(x, name: str = "x", min_samples: int = _MIN_SAMPLES) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(
            f"{name} must have shape (num_samples, num_chains) or (num_samples,), "
            f"got shape {x.shape}"
        )
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] < min_samples or x.shape[1] < 1:
        raise ValueError(
            f"{name} needs at least {min_samples} samples in at least one chain, "
            f"got shape {x.shape}"
        )
    bad = np.count_nonzero(~np.isfinite(x))
    if bad:
        raise ValueError(f"{name} has {bad} non-finite values (shape {x.shape})")
    return x


def _positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)
