"""What every benchmark shares: machine facts, timing, the JSON result file.

Benchmarks are scripts, run from the repository root as
``python benchmarks/NAME.py [--quick]``. Each writes
``benchmarks/results/NAME.json`` with the keys of `RESULT_KEYS`.
"""

import importlib.metadata
import json
import math
import os
import pathlib
import platform
import resource
import sys
import time
from collections.abc import Callable

import jax
import numpy as np
from absl import flags

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
RESULT_KEYS = ("benchmark", "quick", "machine", "versions", "config", "figures")

QUICK = flags.DEFINE_bool(
    "quick", False, "A small run (under a minute) that checks the script works."
)
OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the JSON goes; benchmarks/results by default."
)

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "blackjax")


def has_blackjax() -> bool:
    """Whether the optional ``bench`` extra (BlackJAX) is installed."""
    try:
        import blackjax  # noqa: F401
    except ImportError:
        return False
    return True


def machine() -> dict:
    """The host and the JAX devices a result was measured on."""
    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        # Other jobs on a shared machine slow every figure; this says how busy
        # the machine was when the run started.
        "load_average": list(os.getloadavg()),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def versions() -> dict:
    """Python and package versions; None for a package that is missing."""
    found = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def compile_function(fn: Callable, *args):
    """``jax.jit(fn)`` compiled for ``args``, and the seconds that took."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def run_seconds(fn: Callable, *args) -> float:
    """Wall seconds of one call of ``fn(*args)``, waiting for the result."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def alternate(calls: dict[str, Callable[[], object]], rounds: int) -> dict:
    """Times each call once per round, in the same order every round.

    Interleaving (A B A B ...) exposes every contestant to the same drift in
    the machine's load, so the ratio within a round is steadier than the
    ratio of separate runs. Each call must block until its result is ready.

    Returns
    -------
    dict
        name -> list of seconds, one per round.
    """
    seconds = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            seconds[name].append(time.perf_counter() - start)
    return seconds


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of ``numerator[i] / denominator[i]``."""
    return float(np.median(np.asarray(numerator) / np.asarray(denominator)))


def finite_or_none(value):
    """JSON has no nan or inf: they are written as null."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_result(
    name: str, quick: bool, config: dict, figures: dict, output_dir=None, **extra
):
    """Writes ``NAME.json`` (``NAME.quick.json`` in quick mode) to ``output_dir``.

    ``output_dir`` defaults to ``benchmarks/results``. Quick runs write beside
    the full ones, so that checking that a benchmark still runs never
    overwrites the figures the README quotes.
    """
    directory = pathlib.Path(output_dir or RESULTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": name,
        "quick": bool(quick),
        "machine": machine(),
        "versions": versions(),
        "config": config,
        "figures": figures,
        **extra,
    }
    path = directory / (f"{name}.quick.json" if quick else f"{name}.json")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(finite_or_none(result), f, indent=2, allow_nan=False)
    os.replace(tmp, path)
    return path


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table, numbers to four significant digits."""

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return "n/a" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
