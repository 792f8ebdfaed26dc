"""Chains over devices and MPI ranks: the same answer at any split.

Each configuration runs `parallel_worker.py` in its own processes: fake CPU
devices must be set before JAX starts, and MPI ranks are processes.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from l2hmc_jax import parallel

WORKER = str(Path(__file__).with_name("parallel_worker.py"))
TIMEOUT = 240

needs_mpirun = pytest.mark.skipif(
    shutil.which("mpirun") is None, reason="Open MPI's mpirun is not installed"
)


def _env(**extra):
    env = dict(os.environ)
    env.update(
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        # One thread per rank keeps two ranks on two cores from thrashing.
        OMPI_MCA_rmaps_base_oversubscribe="1",
    )
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _run(args, ranks=1, **kwargs):
    command = [sys.executable, WORKER, *args]
    if ranks > 1:
        command = ["mpirun", "-np", str(ranks), "--oversubscribe", *command]
    return subprocess.run(
        command,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        **kwargs,
    )


CONFIGS = {
    "one_device": ([], 1),
    "four_devices": (["--devices=4"], 1),
    "mpi4jax_2x2": (["--backend=mpi", "--devices=2"], 2),
    "distributed_2x2": (["--backend=jax", "--devices=2"], 2),
}


@needs_mpirun
def test_training_and_sampling_agree_at_any_split(tmp_path):
    # One test runs every split, so that pytest-xdist does not repeat the
    # reference run on each worker.
    runs = {}
    for name, (args, ranks) in CONFIGS.items():
        out = tmp_path / f"{name}.npz"
        done = _run([*args, f"--out={out}"], ranks)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        runs[name] = dict(np.load(out))

    reference = runs.pop("one_device")
    params = [key for key in reference if key.startswith("arr_")]
    assert params
    # (processes, devices of the mesh): the jax.distributed mesh is global.
    expected = {
        "four_devices": (1, 4),
        "mpi4jax_2x2": (2, 2),
        "distributed_2x2": (2, 4),
    }
    for name, other in runs.items():
        split = (int(other["num_processes"]), int(other["num_devices"]))
        assert split == expected[name]
        # Five Adam steps at learning rate 1e-2 from identical starts: only
        # the order of the float32 sums over chains differs between splits.
        for key in params:
            np.testing.assert_allclose(
                other[key], reference[key], atol=1e-5, err_msg=f"{name} {key}"
            )
        np.testing.assert_allclose(other["loss"], reference["loss"], rtol=1e-4)
        np.testing.assert_allclose(
            other["positions"], reference["positions"], atol=1e-5, err_msg=name
        )
        # Then a few sampling steps with the chains sharded the same way.
        np.testing.assert_allclose(
            other["plaquette"], reference["plaquette"], atol=1e-5, err_msg=name
        )


@needs_mpirun
@pytest.mark.parametrize(
    "args",
    [
        ["--backend=mpi", "--fail_rank=1"],
        ["--backend=jax", "--fail_rank=1"],
        ["--backend=mpi", "--kill_rank=1"],
    ],
    ids=["mpi-raises", "jax-raises", "mpi-killed"],
)
def test_a_failing_rank_ends_the_job(tmp_path, args):
    # Rank 0 goes on into a collective that rank 1 never joins; the job must
    # end (not hang until the timeout) with a non-zero exit naming the rank.
    done = _run([*args, f"--out={tmp_path / 'x.npz'}"], ranks=2)
    assert done.returncode != 0
    # Our note on a raised exception, or mpirun's report of a killed process.
    assert re.search(r"rank 1 (of 2|with PID)", done.stderr), done.stderr
    assert not (tmp_path / "x.npz").exists()


def test_backend_none_refuses_a_multi_rank_launch(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="2 MPI ranks"):
        parallel.initialize("none")


def test_mpi_backend_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"l2hmc_jax\[mpi\]"):
        parallel.initialize("mpi")


def test_single_process_runtime_and_bad_arguments():
    runtime = parallel.initialize("none")
    assert runtime.is_main and runtime.num_processes == 1
    assert runtime.num_devices == len(jax.local_devices())
    with pytest.raises(ValueError, match="backend"):
        parallel.initialize("nccl")
    x = np.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(parallel.local_chains(x, runtime), x)
    sharded = parallel.shard_chains(x, runtime)
    np.testing.assert_array_equal(parallel.gather_chains(sharded, runtime), x)
    keys = parallel.shard_chains(jax.random.split(jax.random.key(0), 6), runtime)
    assert keys.shape == (6,)
    parallel.check_num_chains(6 * runtime.num_devices, runtime)
