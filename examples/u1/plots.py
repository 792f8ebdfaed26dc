"""Figures of a U(1) run: training curves, charge histories, autocorrelations."""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from l2hmc_jax import diagnostics  # noqa: E402
from l2hmc_jax.targets import u1_exact  # noqa: E402

SAMPLERS = ("l2hmc", "hmc")
_TRAIN_PANELS = ("loss", "acceptance", "dq_sin", "beta")


def training_curves(path, records) -> bool:
    """Loss, acceptance, ``|dQ_sin|`` and beta against the train step."""
    if not records:
        return False
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(len(_TRAIN_PANELS), 1, figsize=(6, 8), sharex=True)
    for ax, name in zip(axes, _TRAIN_PANELS, strict=True):
        ax.plot(steps, [r.get(name, np.nan) for r in records])
        ax.set_ylabel(name)
    axes[-1].set_xlabel("train step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def charge_history(path, samples, beta, size, num_chains_shown=4) -> bool:
    """The charge of a few chains over time, and its histogram against P(Q)."""
    names = [n for n in SAMPLERS if f"{n}_charge" in samples]
    if not names:
        return False
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 3 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        charge = samples[f"{name}_charge"]
        row[0].plot(charge[:, :num_chains_shown], lw=0.7)
        row[0].set_title(
            f"{name}: Q of {min(num_chains_shown, charge.shape[1])} chains"
        )
        row[0].set_xlabel("trajectory")
        qs = np.arange(charge.min(), charge.max() + 1)
        counts = np.array([(charge == q).mean() for q in qs])
        row[1].bar(qs, counts, alpha=0.6, label="sampled")
        row[1].plot(
            qs, u1_exact.charge_probability(beta, size, qs), "k.", label="exact"
        )
        row[1].set_title(f"{name}: P(Q)")
        row[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def autocorrelations(path, samples, max_lag=100) -> bool:
    """The chain-averaged autocorrelation of Q and Q_sin for each sampler."""
    names = [n for n in SAMPLERS if f"{n}_charge_sin" in samples]
    if not names:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, observable in zip(axes, ("charge", "charge_sin"), strict=True):
        for name in names:
            values = samples[f"{name}_{observable}"]
            lag = min(max_lag, values.shape[0] - 1)
            ax.plot(diagnostics.autocorrelation(values, lag), label=name)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"autocorrelation of {observable}")
        ax.set_xlabel("lag [trajectories]")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_all(directory, records, samples, beta, size) -> list[str]:
    """Writes every figure there is data for; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    made = []
    jobs = (
        ("training.png", lambda p: training_curves(p, records)),
        ("charge.png", lambda p: charge_history(p, samples, beta, size)),
        ("autocorrelation.png", lambda p: autocorrelations(p, samples)),
    )
    for name, job in jobs:
        path = os.path.join(directory, name)
        if job(path):
            made.append(path)
    return made
