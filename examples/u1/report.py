"""Measurements of a sampler's trace, and the summary tables built from them."""

import math

import numpy as np

from l2hmc_jax import diagnostics
from l2hmc_jax.targets import u1_exact


def exact_values(beta: float, size) -> dict:
    """The exact finite-volume ``<cos P>`` and ``<Q^2>``."""
    return {
        "plaquette": u1_exact.mean_plaquette(beta, size),
        "charge_squared": u1_exact.mean_charge_squared(beta, size),
    }


def _finite(value):
    # JSON has no infinity; None marks an estimate that does not exist.
    return float(value) if value is not None and math.isfinite(value) else None


def _tau(values):
    try:
        return _finite(diagnostics.integrated_autocorrelation_time(values))
    except ValueError:
        # Chains too short next to their autocorrelation: no estimate.
        return None


def _estimate(values, exact):
    mean, error = diagnostics.mean_and_error(values)
    error = _finite(error)
    z = (mean - exact) / error if error else None
    return {"mean": mean, "stderr": error, "exact": exact, "z": z}


def measure(trace, *, beta, size, force_evaluations, seconds_per_trajectory) -> dict:
    """Acceptance, autocorrelation and expectation values of one sampler.

    Parameters
    ----------
    trace
        Arrays ``(num_trajectories, num_chains)``, thermalisation discarded,
        with ``plaquette``, ``charge``, ``charge_sin`` and ``acceptance_rate``.
    beta, size
        Where the chains sampled, for the exact values.
    force_evaluations
        Force (gradient) evaluations per trajectory.
    seconds_per_trajectory
        Wall time of one trajectory of all chains.

    Returns
    -------
    dict
        JSON-ready; estimates that do not exist (a charge that never changed
        has no autocorrelation time) are None.
    """
    charge = np.asarray(trace["charge"], np.float64)
    exact = exact_values(beta, size)
    result = {
        "num_trajectories": int(charge.shape[0]),
        "num_chains": int(charge.shape[1]),
        "force_evaluations_per_trajectory": int(force_evaluations),
        "seconds_per_trajectory": float(seconds_per_trajectory),
        "acceptance": float(np.mean(trace["acceptance_rate"])),
        "tunneling_rate": diagnostics.tunneling_rate(charge),
    }
    for name in ("charge", "charge_sin"):
        tau = _tau(np.asarray(trace[name], np.float64))
        result[f"tau_int_{name}"] = {
            "trajectories": tau,
            "force_evaluations": None if tau is None else tau * force_evaluations,
            "seconds": None if tau is None else tau * seconds_per_trajectory,
        }
    plaquette = np.asarray(trace["plaquette"], np.float64)
    result["plaquette"] = _estimate(plaquette, exact["plaquette"])
    result["charge_squared"] = _estimate(charge**2, exact["charge_squared"])
    return result


def scalars(name: str, result: dict) -> dict:
    """The headline numbers of `measure`'s result, as TensorBoard tags."""
    values = {
        "acceptance": result["acceptance"],
        "tunneling_rate": result["tunneling_rate"],
        "plaquette": result["plaquette"]["mean"],
        "charge_squared": result["charge_squared"]["mean"],
        "tau_int_charge": result["tau_int_charge"]["trajectories"],
        "tau_int_charge_force_evaluations": result["tau_int_charge"][
            "force_evaluations"
        ],
    }
    return {f"{name}/{k}": v for k, v in values.items() if v is not None}


def _number(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}g}"


def _with_error(estimate):
    if estimate["stderr"] is None:
        return f"{estimate['mean']:.5f} (no error estimate)"
    return f"{estimate['mean']:.5f} +- {estimate['stderr']:.5f}"


def one_line(result: dict) -> str:
    """A log line of `measure`'s headline numbers."""
    tau = result["tau_int_charge"]
    return (
        f"acceptance {result['acceptance']:.3f}, tau_int(Q) "
        f"{_number(tau['trajectories'])} trajectories "
        f"({_number(tau['force_evaluations'])} force evaluations), "
        f"<cos P> {_with_error(result['plaquette'])} "
        f"(exact {result['plaquette']['exact']:.5f})"
    )


_ROWS = (
    (
        "force evaluations / trajectory",
        lambda r: str(r["force_evaluations_per_trajectory"]),
    ),
    ("acceptance", lambda r: f"{r['acceptance']:.3f}"),
    (
        "tau_int(Q) [trajectories]",
        lambda r: _number(r["tau_int_charge"]["trajectories"]),
    ),
    (
        "tau_int(Q) [force evaluations]",
        lambda r: _number(r["tau_int_charge"]["force_evaluations"]),
    ),
    ("tau_int(Q) [seconds]", lambda r: _number(r["tau_int_charge"]["seconds"])),
    (
        "tau_int(Q_sin) [trajectories]",
        lambda r: _number(r["tau_int_charge_sin"]["trajectories"]),
    ),
    ("tunneling rate <abs(dQ)>", lambda r: f"{r['tunneling_rate']:.4f}"),
    ("<cos P>", lambda r: _with_error(r["plaquette"])),
    ("<cos P> z-score vs exact", lambda r: _number(r["plaquette"]["z"], 3)),
    ("<Q^2>", lambda r: _with_error(r["charge_squared"])),
    ("<Q^2> z-score vs exact", lambda r: _number(r["charge_squared"]["z"], 3)),
    ("seconds / trajectory", lambda r: _number(r["seconds_per_trajectory"], 3)),
    ("chains x trajectories", lambda r: f"{r['num_chains']} x {r['num_trajectories']}"),
)


def markdown(summary: dict) -> str:
    """``summary.md``: the samplers side by side, with the exact values."""
    size = "x".join(str(n) for n in summary["size"])
    exact = summary["exact"]
    lines = [
        f"# U(1) on a {size} lattice at beta = {summary['beta']:g}",
        "",
        f"Exact: <cos P> = {exact['plaquette']:.6f}, "
        f"<Q^2> = {exact['charge_squared']:.6f}.",
        "",
    ]
    train = summary.get("train")
    if train:
        final = train["final_metrics"]
        lines += [
            f"L2HMC trained for {train['num_steps']} steps "
            f"({train['seconds']:.1f} s in the last invocation); last logged "
            f"loss {final['loss']:.4g}, acceptance {final['acceptance']:.3f}.",
            "",
        ]
    samplers = summary["samplers"]
    if not samplers:
        return "\n".join(lines + ["No sampler has been measured yet.", ""])
    names = list(samplers)
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for label, cell in _ROWS:
        lines.append(
            f"| {label} | " + " | ".join(cell(samplers[n]) for n in names) + " |"
        )
    if "hmc" in samplers:
        hmc = samplers["hmc"]
        lines += [
            "",
            f"HMC: step size {hmc['step_size']:.4g} tuned by dual averaging, "
            f"trajectory length {hmc['trajectory_length']:.3g}.",
        ]
    lines.append("")
    return "\n".join(lines)
