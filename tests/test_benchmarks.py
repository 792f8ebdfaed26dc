"""Every benchmark's quick mode runs and writes its JSON.

Timings are never asserted: they depend on the machine. This only catches a
benchmark that no longer runs or no longer writes what the README reads.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
# Modules of the directory that are not benchmarks.
HELPERS = {"harness.py", "__init__.py"}
RESULT_KEYS = {"benchmark", "quick", "machine", "versions", "config", "figures"}

SCRIPTS = sorted(
    path.name for path in BENCHMARKS.glob("*.py") if path.name not in HELPERS
)


def test_the_four_benchmarks_exist():
    assert {"hmc_speed.py", "l2hmc_speed.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode_writes_json(script, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / script),
            "--quick",
            f"--output_dir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    name = script.removesuffix(".py")
    with open(tmp_path / f"{name}.quick.json") as f:
        result = json.load(f)
    assert RESULT_KEYS <= set(result)
    assert result["benchmark"] == name
    assert result["quick"] is True
    assert result["figures"]
    if name == "hmc_speed":
        # It runs without the bench extra, and says whether BlackJAX ran.
        ran = all("blackjax" in fig for fig in result["figures"].values())
        assert ran == (result["blackjax_missing"] is None)


def test_results_have_no_nan(tmp_path):
    # JSON has no nan: the harness writes null, so that any reader can parse
    # a result in which a figure could not be measured.
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import harness
    finally:
        sys.path.remove(str(ROOT))
    path = harness.write_result("probe", True, {}, {"x": float("nan")}, tmp_path)
    with open(path) as f:
        assert json.load(f)["figures"] == {"x": None}
