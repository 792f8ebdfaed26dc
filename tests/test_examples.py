"""The U(1) example end to end: outputs, exactness, resumption, bad inputs.

One run of the test config, killed part-way through training and resumed, is
shared by the tests of this module (compilation dominates its cost).
"""

import fcntl
import glob
import json
import os
import pathlib
import re
import shutil
import struct
import sys

import jax
import numpy as np
import pytest

# The examples are scripts beside the package, not part of it.
ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.common import tensorboard  # noqa: E402
from examples.common.metrics import MetricsLog  # noqa: E402
from examples.u1 import experiment  # noqa: E402
from examples.u1.configs import default as default_config  # noqa: E402
from examples.u1.configs import paper as paper_config  # noqa: E402
from examples.u1.configs import test as test_config  # noqa: E402
from examples.u1.validation import validate_config  # noqa: E402
from l2hmc_jax import diagnostics  # noqa: E402
from l2hmc_jax.checkpoint import Checkpointer, CheckpointError  # noqa: E402
from l2hmc_jax.targets import u1_exact  # noqa: E402

# Train steps before the simulated kill; the test config checkpoints every 10.
KILL_AFTER = 15


def _shared_dir(tmp_path_factory):
    # Under pytest-xdist every worker has its own base directory inside one
    # per session; the run lives there so that all workers can share it.
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _kill_and_resume(workdir):
    config = test_config.get_config()
    config.train.stop_after = KILL_AFTER
    assert experiment.run(config, workdir, "all") is None
    killed = {
        "checkpoints": Checkpointer(os.path.join(workdir, "checkpoints")).all_steps(),
        "metrics_steps": [
            r["step"] for r in MetricsLog(os.path.join(workdir, "metrics.jsonl")).read()
        ],
        "has_summary": os.path.exists(os.path.join(workdir, "summary.json")),
    }
    config.train.stop_after = 0
    summary = experiment.run(config, workdir, "all")
    return killed, summary


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The test config, stopped after 15 train steps and then rerun to the end.

    Computed once per session: the first worker to take the lock runs it and
    leaves ``done.json`` for the others.
    """
    root = _shared_dir(tmp_path_factory)
    workdir = str(root / "u1_example_run")
    done = os.path.join(str(root), "u1_example_run.json")
    with open(os.path.join(str(root), "u1_example_run.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            killed, summary = _kill_and_resume(workdir)
            with open(done, "w") as f:
                json.dump({"killed": killed, "summary": summary}, f)
        with open(done) as f:
            shared = json.load(f)
    return {"workdir": workdir, "config": test_config.get_config(), **shared}


def _copy(run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run["workdir"], target)
    return str(target)


# The summary's schema: a type, or a dict of the same for nested entries.
NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))
ESTIMATE = {
    "mean": float,
    "stderr": OPTIONAL_NUMBER,
    "exact": float,
    "z": OPTIONAL_NUMBER,
}
TAU = {
    "trajectories": OPTIONAL_NUMBER,
    "force_evaluations": OPTIONAL_NUMBER,
    "seconds": OPTIONAL_NUMBER,
}
SAMPLER = {
    "num_trajectories": int,
    "num_chains": int,
    "force_evaluations_per_trajectory": int,
    "seconds_per_trajectory": float,
    "acceptance": float,
    "tunneling_rate": float,
    "tau_int_charge": TAU,
    "tau_int_charge_sin": TAU,
    "plaquette": ESTIMATE,
    "charge_squared": ESTIMATE,
}
SUMMARY = {
    "beta": NUMBER,
    "size": list,
    "exact": {"plaquette": float, "charge_squared": float},
    "train": {
        "num_steps": int,
        "resumed_from": int,
        "seconds": float,
        "final_metrics": dict,
    },
    "samplers": {
        "l2hmc": {
            **SAMPLER,
            "trained_steps": int,
            "step_size_x": float,
            "step_size_v": float,
        },
        "hmc": {**SAMPLER, "step_size": float, "trajectory_length": float},
    },
    "config": dict,
}


def _check_schema(value, schema, where="summary"):
    if isinstance(schema, dict):
        assert isinstance(value, dict), where
        missing = set(schema) - set(value)
        assert not missing, f"{where} lacks {sorted(missing)}"
        for key, sub in schema.items():
            _check_schema(value[key], sub, f"{where}.{key}")
    else:
        assert isinstance(value, schema), (where, value)


def test_outputs_and_summary_schema(run):
    workdir, config = run["workdir"], run["config"]
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    _check_schema(summary, SUMMARY)
    assert summary == run["summary"]
    assert summary["size"] == list(config.lattice.size)
    assert summary["train"]["resumed_from"] == 10

    markdown = open(os.path.join(workdir, "summary.md")).read()
    assert "| force evaluations / trajectory | 5 | 5 |" in markdown
    for name in ("training", "charge", "autocorrelation"):
        assert os.path.getsize(os.path.join(workdir, "plots", f"{name}.png")) > 0

    samples = np.load(os.path.join(workdir, "samples.npz"))
    shape = (config.eval.num_steps, config.eval.num_chains)
    for sampler in ("l2hmc", "hmc"):
        for name in ("plaquette", "charge", "charge_sin", "acceptance_rate"):
            assert samples[f"{sampler}_{name}"].shape == shape
    l2hmc, hmc = summary["samplers"]["l2hmc"], summary["samplers"]["hmc"]
    # Untouched, hmc.num_steps matches the force evaluations of L2HMC (2N + 1).
    num_forces = 2 * config.sampler.num_layers + 1
    assert hmc["force_evaluations_per_trajectory"] == num_forces
    assert l2hmc["force_evaluations_per_trajectory"] == num_forces
    assert l2hmc["trained_steps"] == config.train.num_steps


def test_both_samplers_reproduce_the_exact_plaquette(run):
    config = run["config"]
    samples = np.load(os.path.join(run["workdir"], "samples.npz"))
    beta, size = config.lattice.beta_final, tuple(config.lattice.size)
    exact = u1_exact.mean_plaquette(beta, size)
    for sampler in ("l2hmc", "hmc"):
        plaquette = samples[f"{sampler}_plaquette"].astype(np.float64)
        mean, error = diagnostics.mean_and_error(plaquette)
        assert abs(mean - exact) < 5 * error, (sampler, mean, error, exact)
        reported = run["summary"]["samplers"][sampler]["plaquette"]
        assert reported["mean"] == pytest.approx(mean)
        assert reported["exact"] == pytest.approx(exact)


def test_metrics_and_event_files(run):
    workdir, config = run["workdir"], run["config"]
    steps = [
        r["step"] for r in MetricsLog(os.path.join(workdir, "metrics.jsonl")).read()
    ]
    every = config.train.log_every
    assert steps == list(range(every, config.train.num_steps + 1, every))

    files = sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.*")))
    # One file for the killed invocation, one for the resumed one.
    assert len(files) == 2
    assert all(
        re.fullmatch(r"events\.out\.tfevents\.[\d.]+\..+", os.path.basename(f))
        for f in files
    )
    loss_steps, evaluated = set(), set()
    for path in files:
        events = tensorboard.read_events(path)
        assert events[0]["file_version"] == tensorboard.FILE_VERSION
        for event in events[1:]:
            if "train/loss" in event["scalars"]:
                loss_steps.add(event["step"])
            evaluated |= {tag.split("/")[0] for tag in event["scalars"]}
    assert loss_steps == set(steps)
    assert {"l2hmc", "hmc", "train"} <= evaluated


def test_kill_and_resume_repeats_the_uninterrupted_run(run, tmp_path):
    killed = run["killed"]
    assert killed["checkpoints"] == [10]
    assert killed["metrics_steps"] == [5, 10, 15]
    assert not killed["has_summary"]

    config = test_config.get_config()
    reference = str(tmp_path / "uninterrupted")
    experiment.run(config, reference, "train")

    checkpointers = [
        Checkpointer(os.path.join(w, "checkpoints"))
        for w in (run["workdir"], reference)
    ]
    steps = [c.latest_step() for c in checkpointers]
    assert steps == [config.train.num_steps] * 2
    assert checkpointers[0].metadata() == checkpointers[1].metadata()
    resumed = MetricsLog(os.path.join(run["workdir"], "metrics.jsonl")).read()
    uninterrupted = MetricsLog(os.path.join(reference, "metrics.jsonl")).read()
    # The keys of every step depend on the step alone, so resuming from the
    # checkpoint at step 10 redoes steps 11 to 15 exactly.
    assert resumed == uninterrupted

    sampler = experiment.make_sampler(config, config.lattice.beta_final)
    like = experiment.initial_train_state(
        config, sampler, experiment.make_optimizer(config)
    )
    restored = [c.restore(like)[0] for c in checkpointers]
    for a, b in zip(*(jax.tree.leaves(r) for r in restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_with_another_lattice_size_names_both(run, tmp_path):
    workdir = _copy(run, tmp_path)
    config = test_config.get_config()
    config.lattice.size = (6, 6)
    with pytest.raises(CheckpointError, match=r"size=\[4, 4\].*size=\[6, 6\]"):
        experiment.run(config, workdir, "train")


def test_resume_with_another_network_names_both(run, tmp_path):
    workdir = _copy(run, tmp_path)
    config = test_config.get_config()
    config.sampler.hidden_sizes = (8, 8)
    with pytest.raises(CheckpointError, match=r"network_shape=\[16\].*\[8, 8\]"):
        experiment.run(config, workdir, "evaluate")


def _state_files(workdir, step):
    root = os.path.join(workdir, "checkpoints", str(step), "state")
    files = [
        os.path.join(dirpath, name)
        for dirpath, _, names in os.walk(root)
        for name in names
        if os.sep + "d" + os.sep in os.path.join(dirpath, name)
    ]
    assert files
    return files


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip_last_byte(path):
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        byte = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("damage", [_truncate, _flip_last_byte])
def test_damaged_checkpoint_is_reported(run, tmp_path, damage):
    workdir = _copy(run, tmp_path)
    step = run["config"].train.num_steps
    for path in _state_files(workdir, step):
        damage(path)
    before = _snapshot(workdir)
    with pytest.raises(CheckpointError, match=os.path.join("checkpoints", str(step))):
        experiment.run(run["config"], workdir, "evaluate")
    # The failed run removed and overwrote nothing, checkpoints included (it
    # may have added files, such as a new event file).
    after = _snapshot(workdir)
    assert {path: after.get(path) for path in before} == before


def _snapshot(workdir):
    """Every file under ``workdir`` with its contents."""
    files = {}
    for dirpath, _, names in os.walk(workdir):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, workdir)] = f.read()
    return files


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="--mode=train"):
        experiment.run(test_config.get_config(), str(tmp_path / "empty"), "evaluate")


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("lattice.size", (16,), r"config\.lattice\.size must be a pair"),
        ("lattice.size", (1, 8), r"config\.lattice\.size must be a pair"),
        ("lattice.beta_final", -1.0, r"config\.lattice\.beta_final"),
        ("precision", "float16", r"config\.precision must be one of"),
        ("sampler.network", "transformer", r"config\.sampler\.network"),
        ("sampler.hidden_sizes", (0,), r"config\.sampler\.hidden_sizes"),
        ("train.num_steps", 0, r"config\.train\.num_steps must be a positive"),
        ("train.num_eras", 100, r"num_eras \(100\) must be at most"),
        ("train.step_size_learning_rate", 0.0, r"step_size_learning_rate must be"),
        ("eval.num_steps", 150, r"must be a multiple of config\.eval\.num_burnin"),
        ("hmc.target_acceptance", 1.5, r"config\.hmc\.target_acceptance"),
    ],
)
def test_bad_config_values_are_named_before_anything_runs(
    tmp_path, field, value, match
):
    config = test_config.get_config()
    parent, _, name = field.rpartition(".")
    node = config
    for part in filter(None, parent.split(".")):
        node = node[part]
    node[name] = value
    workdir = tmp_path / "never"
    with pytest.raises(ValueError, match=match):
        experiment.run(config, str(workdir), "all")
    assert not workdir.exists()


def test_every_error_is_listed_at_once():
    config = test_config.get_config()
    config.train.num_chains = -1
    config.eval.num_chains = -2
    with pytest.raises(ValueError) as error:
        validate_config(config)
    assert "config.train.num_chains" in str(error.value)
    assert "config.eval.num_chains" in str(error.value)


def test_bad_mode_is_named(tmp_path):
    with pytest.raises(ValueError, match="'sample'"):
        experiment.run(test_config.get_config(), str(tmp_path), "sample")


@pytest.mark.parametrize("module", [default_config, paper_config, test_config])
def test_shipped_configs_are_valid(module):
    validate_config(module.get_config())


def test_float64_precision_runs_in_float64(tmp_path):
    config = test_config.get_config()
    config.precision = "float64"
    config.eval.num_chains = 8
    config.hmc.num_adaptation_steps = 50
    workdir = str(tmp_path / "f64")
    summary = experiment.run(config, workdir, "hmc")
    samples = np.load(os.path.join(workdir, "samples.npz"))
    assert samples["hmc_plaquette"].dtype == np.float64
    plaquette = summary["samplers"]["hmc"]["plaquette"]
    assert abs(plaquette["mean"] - plaquette["exact"]) < 5 * plaquette["stderr"]
    assert summary["train"] is None
    assert "l2hmc" not in summary["samplers"]


# The TensorBoard writer on its own.


def test_crc32c_known_answer():
    assert tensorboard.crc32c(b"123456789") == 0xE3069283
    assert tensorboard.crc32c(b"") == 0


def test_event_file_round_trip(tmp_path):
    with tensorboard.SummaryWriter(tmp_path) as writer:
        writer.scalars(3, {"a": 1.5, "b/c": -2.0})
        writer.scalars(2**40, {"a": 0.25})
        path = writer.path
    with open(path, "rb") as f:
        blob = f.read()
    # Check the framing of the first record by hand, not through the reader.
    (length,) = struct.unpack("<Q", blob[:8])
    (length_crc,) = struct.unpack("<I", blob[8:12])
    (data_crc,) = struct.unpack("<I", blob[12 + length : 16 + length])
    assert length_crc == tensorboard.masked_crc32c(blob[:8])
    assert data_crc == tensorboard.masked_crc32c(blob[12 : 12 + length])

    events = tensorboard.read_events(path)
    assert [e["file_version"] for e in events] == ["brain.Event:2", None, None]
    assert [e["step"] for e in events] == [0, 3, 2**40]
    assert events[1]["scalars"] == {"a": 1.5, "b/c": -2.0}
    assert events[2]["scalars"] == {"a": 0.25}
    assert all(isinstance(e["wall_time"], float) for e in events)


def test_damaged_event_file_is_detected(tmp_path):
    with tensorboard.SummaryWriter(tmp_path) as writer:
        writer.scalars(1, {"a": 1.0})
        path = writer.path
    _flip_last_byte(path)
    with pytest.raises(ValueError, match="CRC"):
        tensorboard.read_events(path)


# The toy-density example.


def test_toy_example_matches_exact_moments(tmp_path):
    from examples.toy import main as toy_main

    summary = toy_main.run(
        str(tmp_path),
        # Of unit scale: a short trajectory mixes it within the few hundred
        # samples a fast test can afford (the correlated Gaussian needs more).
        "rough_well",
        train_steps=50,
        num_layers=2,
        hidden_size=8,
        num_chains=16,
        num_samples=400,
        num_burnin=100,
    )
    assert os.path.exists(tmp_path / "summary.md")
    with open(tmp_path / "summary.json") as f:
        assert json.load(f) == summary
    for name in ("l2hmc", "hmc"):
        result = summary["samplers"][name]
        assert result["force_evaluations_per_trajectory"] == 5  # 2N + 1
        for observable in ("x0", "x1"):
            for moment in ("mean", "second_moment"):
                estimate = result["observables"][observable][moment]
                deviation = abs(estimate["mean"] - estimate["exact"])
                assert deviation < 5 * estimate["stderr"], (name, observable, moment)


# The quickstart notebook.


def test_quickstart_notebook_runs():
    import nbclient
    import nbformat

    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    # Raises CellExecutionError on the first failing cell; the notebook's own
    # asserts compare both samplers with the exact plaquette.
    client.execute()
    text = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "HMC: acceptance" in text
    assert "L2HMC: acceptance" in text
