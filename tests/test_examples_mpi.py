"""The U(1) example under ``mpirun -np 2``, with each parallel backend.

Each run is a separate ``mpirun`` of ``examples/u1/main.py`` on the test
config, shrunk further, with two fake CPU devices per rank. The checks are
that the job succeeds, that only rank 0 wrote the workdir (one event file,
no repeated metrics), and that a second launch resumes from the checkpoint.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "examples" / "u1" / "main.py")
CONFIG = str(ROOT / "examples" / "u1" / "configs" / "test.py")
# A hang (a collective one rank never joins) must fail the test, not block it.
TIMEOUT = 300

# Smaller than configs/test.py: compiling, not sampling, dominates, so the
# point is few distinct shapes and few steps.
FLAGS = (
    "--config.sampler.num_layers=1",
    "--config.train.num_eras=1",
    "--config.train.log_every=5",
    "--config.train.checkpoint_every=5",
    "--config.train.warmup_steps=1",
    "--config.eval.num_burnin=20",
    "--config.eval.num_steps=40",
    "--config.hmc.num_adaptation_steps=20",
)


def _mpirun(workdir, backend, *flags):
    command = [
        "mpirun",
        "-np",
        "2",
        "--oversubscribe",
        sys.executable,
        MAIN,
        f"--config={CONFIG}",
        f"--workdir={workdir}",
        f"--config.parallel.backend={backend}",
        *FLAGS,
        *flags,
    ]
    env = dict(os.environ)
    env.update(
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    # Its own session, so that a timeout ends mpirun and both ranks.
    process = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        log, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
        pytest.fail(f"mpirun ({backend}) hung for {TIMEOUT} s:\n{log[-3000:]}")
    assert process.returncode == 0, f"mpirun ({backend}) failed:\n{log[-5000:]}"
    return log


def _metrics_steps(workdir):
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line)["step"] for line in f if line.strip()]


def _checkpoint_steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs Open MPI")
@pytest.mark.parametrize("backend", ["jax", "mpi"])
def test_only_rank_0_writes_and_every_rank_resumes(backend, tmp_path):
    workdir = tmp_path / "u1"
    log = _mpirun(workdir, backend, "--config.train.num_steps=10")

    for rank in (0, 1):
        assert f"Rank {rank} of 2 (parallel backend '{backend}')" in log
    assert "4 training and 4 evaluation chains per device" in log
    for name in ("config.json", "summary.json", "summary.md", "samples.npz"):
        assert (workdir / name).is_file(), name
    for name in ("train", "l2hmc", "hmc"):
        assert (workdir / "results" / f"{name}.json").is_file(), name
    assert sorted(p.name for p in (workdir / "plots").iterdir()) == [
        "autocorrelation.png",
        "charge.png",
        "training.png",
    ]
    # Two writers would leave two event files and every metric twice.
    events = set((workdir / "tensorboard").iterdir())
    assert len(events) == 1
    assert _metrics_steps(workdir) == [5, 10]
    assert _checkpoint_steps(workdir) == [5, 10]
    with open(workdir / "summary.json") as f:
        summary = json.load(f)
    assert summary["train"]["resumed_from"] == 0
    assert set(summary["samplers"]) == {"l2hmc", "hmc"}

    # A rank that started over would run more train steps than the others
    # and wait forever in a collective, so a clean exit means all resumed.
    log = _mpirun(workdir, backend, "--config.train.num_steps=15", "--mode=train")
    assert "Resuming training from the checkpoint at step 10." in log
    assert _metrics_steps(workdir) == [5, 10, 15]
    assert _checkpoint_steps(workdir) == [5, 10, 15]
    # Each launch opens one event file of its own.
    assert len(set((workdir / "tensorboard").iterdir()) - events) == 1
    with open(workdir / "results" / "train.json") as f:
        assert json.load(f)["resumed_from"] == 10
