"""Train L2HMC on 2D U(1), evaluate it, and run the tuned HMC baseline.

`run(config, workdir, mode)` is the whole experiment; ``main.py`` only parses
flags. Everything a run produces lives in ``workdir``:

- ``config.json``: the config of the latest invocation;
- ``checkpoints/``: Orbax checkpoints of the `TrainState`, resumed from;
- ``metrics.jsonl`` and ``tensorboard/``: training metrics;
- ``results/{train,l2hmc,hmc}.json``: what each mode measured;
- ``samples.npz``: the recorded observables of every chain and trajectory;
- ``summary.json``, ``summary.md`` and ``plots/``: both samplers side by side.

Under several processes (``config.parallel.backend`` "jax" or "mpi"), the
chains are split over every device of every process, and all processes
compute; only the main one (rank 0) writes the workdir. Every process reads
the checkpoints, so every one resumes.
"""

import contextlib
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
from l2hmc_jax import adaptation, parallel
from l2hmc_jax import loss as loss_lib
from l2hmc_jax import train as train_lib
from l2hmc_jax.checkpoint import Checkpointer
from l2hmc_jax.targets import u1

MODES = ("train", "evaluate", "hmc", "all")


def run(
    config, workdir: str, mode: str = "all", runtime: parallel.Runtime | None = None
) -> dict | None:
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
    runtime
        From `l2hmc_jax.parallel.initialize`; by default it is initialized
        here with ``config.parallel.backend``. Every process must call `run`
        with the same arguments.

    Returns
    -------
    dict or None
        The summary (as in ``summary.json``), or None if training stopped
        early because of ``config.train.stop_after``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    validate_config(config)
    if runtime is None:
        runtime = parallel.initialize(config.parallel.backend)
    check_chains(config, runtime)
    if runtime.is_main:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(config.to_dict(), f, indent=2)

    # The other processes get None for a writer, and write nothing.
    writer = None
    if runtime.is_main:
        writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
    with (
        jax.enable_x64(config.precision == "float64"),
        writer or contextlib.nullcontext(),
    ):
        if mode in ("train", "all"):
            finished = train(config, workdir, writer, runtime)
            if not finished:
                return None
        if mode in ("evaluate", "all"):
            evaluate(config, workdir, writer, runtime)
        if mode in ("hmc", "all"):
            run_hmc(config, workdir, writer, runtime)
    if runtime.is_main:
        summary = write_summary(config, workdir)
    _barrier(runtime)
    if not runtime.is_main:
        with open(os.path.join(workdir, "summary.json")) as f:
            summary = json.load(f)
    return summary


def check_chains(config, runtime: parallel.Runtime) -> None:
    """Raises unless the chain counts split evenly over every device in use."""
    for name in ("train.num_chains", "eval.num_chains"):
        section, field = name.split(".")
        try:
            parallel.check_num_chains(config[section][field], runtime)
        except ValueError as error:
            raise ValueError(f"config.{name}: {error}") from None


def _barrier(runtime):
    # A collective that every process enters: the main one has finished
    # writing what came before it.
    parallel.broadcast_from_main(np.zeros((), np.int32), runtime)


def _chain_keys(rng_key, num_chains, runtime):
    """One key per chain of the whole run; this process's share, on its devices."""
    keys = jax.random.split(rng_key, num_chains)
    return parallel.shard_chains(parallel.local_chains(keys, runtime), runtime)


def _local_tree(tree, runtime):
    """This process's chains of every leaf (leading chain axis), on its devices."""
    local = jax.tree.map(lambda x: parallel.local_chains(x, runtime), tree)
    return parallel.shard_chains(local, runtime)


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
        config.train.learning_rate,
        clip_norm=config.train.clip_norm,
        step_size_learning_rate=config.train.step_size_learning_rate,
    )


def _checkpoints_dir(workdir):
    return os.path.join(workdir, "checkpoints")


def _checkpointer(config, workdir, runtime):
    # Each process opens its own: the main one to write, the others to read.
    return Checkpointer(
        _checkpoints_dir(workdir),
        config.train.max_checkpoints,
        single_process=runtime.num_processes > 1,
    )


def _restore_latest(config, workdir, runtime, like):
    """The latest checkpoint restored into ``like``'s structure, or None."""
    # Opening a checkpointer creates its directory, which only the main
    # process may do.
    if not runtime.is_main and not os.path.isdir(_checkpoints_dir(workdir)):
        return None
    with _checkpointer(config, workdir, runtime) as checkpointer:
        if checkpointer.latest_step() is None:
            return None
        state, _ = checkpointer.restore(like, expected=checkpoint_metadata(config))
    return state


def _place_train_state(state, runtime):
    """Parameters and optimizer state on every device, chains split over them."""
    return train_lib.TrainState(
        parallel.replicate(state.step, runtime),
        parallel.replicate(state.params, runtime),
        parallel.replicate(state.opt_state, runtime),
        _local_tree(state.positions, runtime),
    )


def _host_train_state(state, runtime):
    """The whole train state as numpy on every process (a collective)."""
    return train_lib.TrainState(
        *parallel.to_host((state.step, state.params, state.opt_state), runtime),
        parallel.gather_chains(state.positions, runtime),
    )


def train(config, workdir: str, writer: SummaryWriter | None, runtime=None) -> bool:
    """Trains (or resumes training) and checkpoints; True once all steps are done.

    ``writer`` is None on the processes other than the main one, which write
    nothing.
    """
    if runtime is None:
        runtime = parallel.initialize("none")
    if not runtime.is_main:
        return _train_loop(config, workdir, writer, None, runtime)
    with _checkpointer(config, workdir, runtime) as checkpointer:
        return _train_loop(config, workdir, writer, checkpointer, runtime)


def _train_loop(config, workdir, writer, checkpointer, runtime) -> bool:
    size = tuple(config.lattice.size)
    dtype = _dtype(config)
    cfg = config.train
    metadata = checkpoint_metadata(config)
    metrics_log = MetricsLog(os.path.join(workdir, "metrics.jsonl"))
    is_main = runtime.is_main

    def target_fn(beta):
        return u1.target(beta, size)

    sampler = make_sampler(config, config.lattice.beta_init)
    optimizer = make_optimizer(config)
    state = jax.device_get(initial_train_state(config, sampler, optimizer))
    # The same seed gives every process the same parameters; taking the main
    # one's keeps that true whatever the platform does with the seed.
    params = parallel.broadcast_from_main(state.params, runtime)
    state = train_lib.init_train_state(params, optimizer, state.positions)
    start = 0
    restored = _restore_latest(config, workdir, runtime, jax.device_get(state))
    if restored is not None:
        state = restored
        start = int(state.step)
        logging.info("Resuming training from the checkpoint at step %d.", start)
    if is_main:
        metrics_log.truncate(start)
    if start >= cfg.num_steps:
        logging.info("Training already finished (%d steps).", start)
        return True
    state = _place_train_state(state, runtime)

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
    train_step = parallel.make_train_step(
        sampler, optimizer, runtime, loss_config, target_fn=target_fn
    )
    # Keys depend on the step only, so a resumed run repeats exactly what an
    # uninterrupted one would have done; one per chain, so it also does not
    # depend on how the chains are split.
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
        disable=not (config.progress and is_main),
    )
    warmup_step_size = parallel.replicate(
        np.asarray(cfg.warmup_step_size, dtype), runtime
    )
    for step in steps:
        beta = parallel.replicate(np.asarray(betas[step], dtype), runtime)
        key_warmup, key_step = jax.random.split(jax.random.fold_in(key_train, step))
        if warmup is not None and step in era_starts:
            positions = warmup(
                _chain_keys(key_warmup, cfg.num_chains, runtime),
                state.positions,
                beta,
                warmup_step_size,
            )
            state = state._replace(positions=positions)
        batch = train_lib.TrainBatch(
            _chain_keys(key_step, cfg.num_chains, runtime), beta
        )
        state, metrics = train_step(state, batch)
        for name, value in parallel.to_host(metrics, runtime).items():
            sums[name] = sums.get(name, 0.0) + float(value)
        count += 1

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.num_steps:
            means = {name: total / count for name, total in sums.items()}
            means["beta"] = float(betas[step])
            if is_main:
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
            # Every process takes part in gathering the chains.
            host_state = _host_train_state(state, runtime)
            if is_main:
                checkpointer.save(done, host_state, metadata)
        if cfg.stop_after and done - start >= cfg.stop_after:
            logging.warning(
                "Stopping after %d steps (config.train.stop_after).", done - start
            )
            return False

    if is_main:
        result = {
            "num_steps": cfg.num_steps,
            "resumed_from": start,
            # Of this invocation only: steps before a resume were timed
            # elsewhere.
            "seconds": time.perf_counter() - start_time,
            "final_metrics": metrics_log.read()[-1],
        }
        _write_result(workdir, "train", result)
    return True


def run_chain(
    rng_key,
    algorithm,
    positions,
    config,
    *,
    params=None,
    desc="sample",
    runtime: parallel.Runtime | None = None,
):
    """Thermalises, then records ``config.eval.num_steps`` trajectories.

    The chain runs in blocks of ``config.eval.num_burnin`` trajectories; the
    first block, which also pays for compilation, is the discarded
    thermalisation, so the timing of the others is sampling alone.

    ``positions`` (or a state) hold this process's chains, placed by
    `_local_tree`; ``params`` are replicated. Each chain draws from its own
    key, and every process gets the trace of all the chains.

    Returns
    -------
    trace
        NumPy arrays ``(num_steps, num_chains)`` per observable.
    seconds_per_trajectory
        Wall time per trajectory (all chains at once) after thermalisation.
    """
    if runtime is None:
        runtime = parallel.initialize("none")
    block = config.eval.num_burnin
    num_blocks = 1 + config.eval.num_steps // block
    num_chains = config.eval.num_chains
    disable = not (config.progress and runtime.is_main)
    state, traces, seconds = positions, [], 0.0
    for i in tqdm(range(num_blocks), desc=desc, disable=disable):
        start = time.perf_counter()
        keys = _chain_keys(jax.random.fold_in(rng_key, i), num_chains, runtime)
        state, trace = l2hmc_jax.sample(keys, algorithm, state, block, params=params)
        # Chains are the second axis of a trace.
        trace = {k: parallel.gather_chains(v.T, runtime).T for k, v in trace.items()}
        if i > 0:
            seconds += time.perf_counter() - start
            traces.append(trace)
    trace = {k: np.concatenate([t[k] for t in traces]) for k in traces[0]}
    return trace, seconds / config.eval.num_steps


def evaluate(config, workdir: str, writer: SummaryWriter | None, runtime=None) -> dict:
    """Samples at beta_final with the latest trained parameters.

    The chains continue the first ``config.eval.num_chains`` training chains.
    """
    if runtime is None:
        runtime = parallel.initialize("none")
    beta = config.lattice.beta_final
    sampler = make_sampler(config, beta)
    like = jax.eval_shape(
        lambda: initial_train_state(config, sampler, make_optimizer(config))
    )
    # The main process may have just saved the checkpoint read here.
    _barrier(runtime)
    state = _restore_latest(config, workdir, runtime, like)
    if state is None:
        raise FileNotFoundError(
            f"no checkpoint in {os.path.abspath(_checkpoints_dir(workdir))}: run "
            "--mode=train first"
        )
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
        _local_tree(positions, runtime),
        config,
        params=parallel.replicate(state.params, runtime),
        desc="l2hmc",
        runtime=runtime,
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


def run_hmc(config, workdir: str, writer: SummaryWriter | None, runtime=None) -> dict:
    """The HMC baseline at beta_final, its step size tuned by dual averaging.

    Every process adapts the step size on all the chains, which gives each the
    same step size and state; then the chains are split for sampling.
    """
    if runtime is None:
        runtime = parallel.initialize("none")
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
    trace, seconds = run_chain(
        key_chain,
        algorithm,
        _local_tree(jax.device_get(adapted.state), runtime),
        config,
        desc="hmc",
        runtime=runtime,
    )
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
    logging.info("%s: %s", name, report.one_line(result))
    if writer is None:
        return
    _write_result(workdir, name, result)
    _update_samples(workdir, name, trace)
    writer.scalars(step, report.scalars(name, result))
    writer.flush()


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
