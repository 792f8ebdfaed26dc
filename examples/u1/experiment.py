"""Train L2HMC on 2D U(1), evaluate it, and run the tuned HMC baseline.

`run(config, workdir, mode)` is the whole experiment; ``main.py`` only parses
flags. Everything a run produces lives in ``workdir``:

- ``config.json``: the config of the latest invocation;
- ``checkpoints/``: Orbax checkpoints of the `TrainState`, resumed from;
- ``metrics.jsonl`` and ``tensorboard/``: training metrics;
- ``results/{train,l2hmc,hmc}.json``: what each mode measured;
- ``samples.npz``: the recorded observables of every chain and trajectory;
- ``summary.json``, ``summary.md`` and ``plots/``: both samplers side by side.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm.auto import tqdm

import l2hmc_jax
from examples.common.metrics import MetricsLog
from examples.common.tensorboard import SummaryWriter
from examples.u1 import plots, report
from examples.u1.validation import validate_config
from l2hmc_jax import adaptation
from l2hmc_jax import loss as loss_lib
from l2hmc_jax import train as train_lib
from l2hmc_jax.checkpoint import Checkpointer
from l2hmc_jax.targets import u1

MODES = ("train", "evaluate", "hmc", "all")


def run(config, workdir: str, mode: str = "all") -> dict | None:
    """Runs one mode of the experiment in ``workdir``.

    Parameters
    ----------
    config
        An `ml_collections.ConfigDict` as ``configs/default.py`` builds it.
    workdir
        Output directory; an existing one is resumed (training) or added to
        (the other modes).
    mode
        ``"train"``, ``"evaluate"`` (the trained sampler), ``"hmc"`` (the
        baseline) or ``"all"`` (the three in turn).

    Returns
    -------
    dict or None
        The summary (as in ``summary.json``), or None if training stopped
        early because of ``config.train.stop_after``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    validate_config(config)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2)

    with (
        jax.enable_x64(config.precision == "float64"),
        SummaryWriter(os.path.join(workdir, "tensorboard")) as writer,
    ):
        if mode in ("train", "all"):
            finished = train(config, workdir, writer)
            if not finished:
                return None
        if mode in ("evaluate", "all"):
            evaluate(config, workdir, writer)
        if mode in ("hmc", "all"):
            run_hmc(config, workdir, writer)
    return write_summary(config, workdir)


def _dtype(config):
    return jnp.float64 if config.precision == "float64" else jnp.float32


def make_sampler(config, beta):
    """The L2HMC sampler the config describes, on the U(1) target at ``beta``."""
    sampler = config.sampler
    network_kwargs = {"activation": sampler.activation}
    if sampler.network == "mlp":
        network_kwargs["hidden_sizes"] = tuple(sampler.hidden_sizes)
    else:
        network_kwargs["channels"] = tuple(sampler.channels)
    return l2hmc_jax.l2hmc(
        u1.target(beta, tuple(config.lattice.size)),
        sampler.num_layers,
        step_size=sampler.step_size,
        network=sampler.network,
        network_kwargs=network_kwargs,
        shared=sampler.shared,
        proposal=sampler.proposal,
        param_dtype=_dtype(config),
    )


def checkpoint_metadata(config) -> dict:
    """What a checkpoint must agree on with the config that restores it."""
    sampler = config.sampler
    shape = sampler.hidden_sizes if sampler.network == "mlp" else sampler.channels
    return {
        "size": list(config.lattice.size),
        "network": sampler.network,
        "network_shape": list(shape),
        "num_layers": sampler.num_layers,
        "shared": sampler.shared,
        "activation": sampler.activation,
        "precision": config.precision,
    }


def _keys(config):
    names = ("params", "links", "train", "l2hmc", "hmc")
    keys = jax.random.split(jax.random.key(config.seed), len(names))
    return {name: keys[i] for i, name in enumerate(names)}


def initial_train_state(config, sampler, optimizer):
    """The train state at step 0: fresh parameters, hot-start chains."""
    keys = _keys(config)
    links = u1.random_links(
        keys["links"],
        config.train.num_chains,
        tuple(config.lattice.size),
        _dtype(config),
    )
    params = sampler.init_params(keys["params"])
    return train_lib.init_train_state(params, optimizer, links)


def make_optimizer(config):
    """Adam with gradient clipping, as the config asks."""
    return train_lib.make_optimizer(
        config.train.learning_rate, clip_norm=config.train.clip_norm
    )


def _checkpointer(config, workdir):
    return Checkpointer(
        os.path.join(workdir, "checkpoints"), config.train.max_checkpoints
    )


def train(config, workdir: str, writer: SummaryWriter) -> bool:
    """Trains (or resumes training) and checkpoints; True once all steps are done."""
    with _checkpointer(config, workdir) as checkpointer:
        return _train_loop(config, workdir, writer, checkpointer)


def _train_loop(config, workdir, writer, checkpointer) -> bool:
    size = tuple(config.lattice.size)
    dtype = _dtype(config)
    cfg = config.train
    metadata = checkpoint_metadata(config)
    metrics_log = MetricsLog(os.path.join(workdir, "metrics.jsonl"))

    def target_fn(beta):
        return u1.target(beta, size)

    sampler = make_sampler(config, config.lattice.beta_init)
    optimizer = make_optimizer(config)
    state = initial_train_state(config, sampler, optimizer)
    start = 0
    if checkpointer.latest_step() is not None:
        state, _ = checkpointer.restore(state, expected=metadata)
        start = int(state.step)
        logging.info("Resuming training from the checkpoint at step %d.", start)
    metrics_log.truncate(start)
    if start >= cfg.num_steps:
        logging.info("Training already finished (%d steps).", start)
        return True

    betas = train_lib.beta_schedule(
        cfg.num_steps,
        config.lattice.beta_init,
        config.lattice.beta_final,
        cfg.num_eras,
    )
    era_starts = set(train_lib.era_starts(betas).tolist())
    warmup = None
    if cfg.warmup_steps:
        warmup = train_lib.make_hmc_warmup(
            target_fn, cfg.warmup_steps, cfg.warmup_num_integration_steps
        )
    loss_config = loss_lib.LossConfig(
        scale=config.loss.scale,
        charge_weight=config.loss.charge_weight,
        plaquette_weight=config.loss.plaquette_weight,
        burn_in_weight=config.loss.burn_in_weight,
    )
    train_step = train_lib.make_train_step(
        sampler, optimizer, loss_config, target_fn=target_fn
    )
    # Keys depend on the step only, so a resumed run repeats exactly what an
    # uninterrupted one would have done.
    key_train = _keys(config)["train"]

    logging.info(
        "Training %d steps on a %dx%d lattice, beta %.3g -> %.3g, %d chains.",
        cfg.num_steps,
        *size,
        config.lattice.beta_init,
        config.lattice.beta_final,
        cfg.num_chains,
    )
    sums, count = {}, 0
    start_time = time.perf_counter()
    steps = tqdm(
        range(start, cfg.num_steps),
        initial=start,
        total=cfg.num_steps,
        desc="train",
        disable=not config.progress,
    )
    for step in steps:
        beta = jnp.asarray(betas[step], dtype)
        key_warmup, key_step = jax.random.split(jax.random.fold_in(key_train, step))
        if warmup is not None and step in era_starts:
            positions = warmup(
                key_warmup,
                state.positions,
                beta,
                jnp.asarray(cfg.warmup_step_size, dtype),
            )
            state = state._replace(positions=positions)
        state, metrics = train_step(state, train_lib.TrainBatch(key_step, beta))
        for name, value in jax.device_get(metrics).items():
            sums[name] = sums.get(name, 0.0) + float(value)
        count += 1

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.num_steps:
            means = {name: total / count for name, total in sums.items()}
            means["beta"] = float(betas[step])
            metrics_log.write(done, means)
            writer.scalars(done, {f"train/{k}": v for k, v in means.items()})
            writer.flush()
            logging.info(
                "step %d: beta %.3g, loss %.4g, acceptance %.3f, |dQ_sin| %.3g",
                done,
                means["beta"],
                means["loss"],
                means["acceptance"],
                means.get("dq_sin", float("nan")),
            )
            sums, count = {}, 0
        if done % cfg.checkpoint_every == 0 or done == cfg.num_steps:
            checkpointer.save(done, state, metadata)
        if cfg.stop_after and done - start >= cfg.stop_after:
            logging.warning(
                "Stopping after %d steps (config.train.stop_after).", done - start
            )
            return False

    result = {
        "num_steps": cfg.num_steps,
        "resumed_from": start,
        # Of this invocation only: steps before a resume were timed elsewhere.
        "seconds": time.perf_counter() - start_time,
        "final_metrics": metrics_log.read()[-1],
    }
    _write_result(workdir, "train", result)
    return True


def run_chain(rng_key, algorithm, positions, config, *, params=None, desc="sample"):
    """Thermalises, then records ``config.eval.num_steps`` trajectories.

    The chain runs in blocks of ``config.eval.num_burnin`` trajectories; the
    first block, which also pays for compilation, is the discarded
    thermalisation, so the timing of the others is sampling alone.

    Returns
    -------
    trace
        NumPy arrays ``(num_steps, num_chains)`` per observable.
    seconds_per_trajectory
        Wall time per trajectory (all chains at once) after thermalisation.
    """
    block = config.eval.num_burnin
    num_blocks = 1 + config.eval.num_steps // block
    state, traces, seconds = positions, [], 0.0
    for i in tqdm(range(num_blocks), desc=desc, disable=not config.progress):
        start = time.perf_counter()
        state, trace = l2hmc_jax.sample(
            jax.random.fold_in(rng_key, i), algorithm, state, block, params=params
        )
        trace = jax.device_get(trace)
        if i > 0:
            seconds += time.perf_counter() - start
            traces.append(trace)
    trace = {k: np.concatenate([t[k] for t in traces]) for k in traces[0]}
    return trace, seconds / config.eval.num_steps


def evaluate(config, workdir: str, writer: SummaryWriter) -> dict:
    """Samples at beta_final with the latest trained parameters.

    The chains continue the first ``config.eval.num_chains`` training chains.
    """
    beta = config.lattice.beta_final
    sampler = make_sampler(config, beta)
    like = jax.eval_shape(
        lambda: initial_train_state(config, sampler, make_optimizer(config))
    )
    with _checkpointer(config, workdir) as checkpointer:
        if checkpointer.latest_step() is None:
            raise FileNotFoundError(
                f"no checkpoint in {checkpointer.directory}: run --mode=train first"
            )
        state, _ = checkpointer.restore(like, expected=checkpoint_metadata(config))
    trained_steps = int(state.step)
    if trained_steps < config.train.num_steps:
        logging.warning(
            "Evaluating a sampler trained for %d of %d steps.",
            trained_steps,
            config.train.num_steps,
        )

    # The training chains end equilibrated at beta_final; a hot start would
    # need a long thermalisation at large beta.
    positions = state.positions[: config.eval.num_chains]
    logging.info(
        "Sampling with L2HMC at beta %.3g: %d chains, %d + %d trajectories.",
        beta,
        config.eval.num_chains,
        config.eval.num_burnin,
        config.eval.num_steps,
    )
    trace, seconds = run_chain(
        _keys(config)["l2hmc"],
        sampler,
        positions,
        config,
        params=state.params,
        desc="l2hmc",
    )
    result = report.measure(
        trace,
        beta=beta,
        size=tuple(config.lattice.size),
        force_evaluations=sampler.force_evaluations,
        seconds_per_trajectory=seconds,
    )
    result["trained_steps"] = trained_steps
    result["step_size_x"] = float(jnp.exp(state.params["log_eps_x"]).mean())
    result["step_size_v"] = float(jnp.exp(state.params["log_eps_v"]).mean())
    _finish_sampler(workdir, writer, "l2hmc", result, trace, trained_steps)
    return result


def run_hmc(config, workdir: str, writer: SummaryWriter) -> dict:
    """The HMC baseline at beta_final, its step size tuned by dual averaging."""
    beta = config.lattice.beta_final
    size = tuple(config.lattice.size)
    target = u1.target(beta, size)
    num_steps = config.hmc.num_steps or make_sampler(config, beta).force_evaluations

    key_links, key_adapt, key_chain = jax.random.split(_keys(config)["hmc"], 3)
    positions = u1.random_links(key_links, config.eval.num_chains, size, _dtype(config))
    logging.info(
        "Tuning HMC with %d leapfrog steps to acceptance %.2f.",
        num_steps,
        config.hmc.target_acceptance,
    )
    adapted = adaptation.find_step_size(
        key_adapt,
        target,
        positions,
        num_steps,
        config.hmc.num_adaptation_steps,
        initial_step_size=config.hmc.initial_step_size,
        target_acceptance=config.hmc.target_acceptance,
    )
    logging.info("HMC step size %.4g.", adapted.step_size)
    algorithm = l2hmc_jax.hmc(target, adapted.step_size, num_steps)
    trace, seconds = run_chain(key_chain, algorithm, adapted.state, config, desc="hmc")
    result = report.measure(
        trace,
        beta=beta,
        size=size,
        force_evaluations=num_steps,
        seconds_per_trajectory=seconds,
    )
    result["step_size"] = adapted.step_size
    result["trajectory_length"] = adapted.step_size * num_steps
    _finish_sampler(workdir, writer, "hmc", result, trace, 0)
    return result


def _finish_sampler(workdir, writer, name, result, trace, step):
    _write_result(workdir, name, result)
    _update_samples(workdir, name, trace)
    writer.scalars(step, report.scalars(name, result))
    writer.flush()
    logging.info("%s: %s", name, report.one_line(result))


def _results_dir(workdir):
    return os.path.join(workdir, "results")


def _write_result(workdir, name, result):
    os.makedirs(_results_dir(workdir), exist_ok=True)
    _atomic_json(os.path.join(_results_dir(workdir), f"{name}.json"), result)


def _read_result(workdir, name):
    path = os.path.join(_results_dir(workdir), f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _atomic_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, allow_nan=False)
    os.replace(tmp, path)


def _update_samples(workdir, name, trace):
    """Adds ``name``'s trace to ``samples.npz``, keeping the other samplers'."""
    path = os.path.join(workdir, "samples.npz")
    arrays = {}
    if os.path.exists(path):
        with np.load(path) as old:
            arrays = {k: old[k] for k in old.files if not k.startswith(f"{name}_")}
    arrays.update({f"{name}_{k}": np.asarray(v) for k, v in trace.items()})
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def write_summary(config, workdir: str) -> dict:
    """Gathers the results in ``workdir`` into ``summary.json``/``.md`` and plots."""
    beta = config.lattice.beta_final
    size = tuple(config.lattice.size)
    samplers = {}
    for name in ("l2hmc", "hmc"):
        result = _read_result(workdir, name)
        if result is not None:
            samplers[name] = result
    summary = {
        "beta": beta,
        "size": list(size),
        "exact": report.exact_values(beta, size),
        "train": _read_result(workdir, "train"),
        "samplers": samplers,
        "config": config.to_dict(),
    }
    # What the file holds (tuples become lists), so callers see the same.
    summary = json.loads(json.dumps(summary, allow_nan=False))
    _atomic_json(os.path.join(workdir, "summary.json"), summary)
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write(report.markdown(summary))
    samples_path = os.path.join(workdir, "samples.npz")
    samples = {}
    if os.path.exists(samples_path):
        with np.load(samples_path) as data:
            samples = {k: data[k] for k in data.files}
    plots.write_all(
        os.path.join(workdir, "plots"),
        MetricsLog(os.path.join(workdir, "metrics.jsonl")).read(),
        samples,
        beta,
        size,
    )
    return summary
