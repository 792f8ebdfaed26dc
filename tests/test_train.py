"""Training: the optax train step, gradients, schedules, and what training buys."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2hmc_jax import adaptation, diagnostics, hmc, l2hmc, sample, train
from l2hmc_jax import loss as loss_lib
from l2hmc_jax.targets import toy, u1, u1_exact


def _expected_jump(sampler, params, key, x):
    """Per chain ``A(x'|x) |x' - x|^2`` of one proposal from ``x``."""
    proposal = jax.jit(sampler.propose)(key, sampler.init(x), params)
    jump = ((proposal.position - x) ** 2).sum(axis=-1)
    return np.asarray(proposal.acceptance_rate * jump, np.float64)


def _train(sampler, params, positions, num_steps, seed, loss_config=None, **kwargs):
    optimizer = train.make_optimizer(1e-3)
    state = train.init_train_state(params, optimizer, positions)
    step = train.make_train_step(sampler, optimizer, loss_config, **kwargs)
    keys = jax.random.split(jax.random.key(seed), num_steps)
    history = []
    for key in keys:
        state, metrics = step(state, train.TrainBatch(key, jnp.float32(1.0)))
        history.append(metrics)
    return state, history


def _assert_exact_u1_observables(trace, beta, size, num_discarded):
    """<cos P> and <Q^2> of ``trace`` within 4 standard errors of the exact values."""
    exact = {
        "plaquette": u1_exact.mean_plaquette(beta, size),
        "charge_squared": u1_exact.mean_charge_squared(beta, size),
    }
    plaquette = np.asarray(trace["plaquette"], np.float64)[num_discarded:]
    charge = np.asarray(trace["charge"], np.float64)[num_discarded:]
    for name, values in (("plaquette", plaquette), ("charge_squared", charge**2)):
        mean, error = diagnostics.mean_and_error(values)
        assert abs(mean - exact[name]) < 4 * error, (name, mean, error, exact[name])


def test_training_raises_the_expected_jump_on_the_correlated_gaussian():
    # The correlated Gaussian is where Levy et al. show L2HMC learning fast:
    # plain leapfrog at a step size safe for the narrow direction crawls
    # along the wide one.
    target = toy.strongly_correlated_gaussian()
    sampler = l2hmc(
        target, num_layers=5, step_size=0.1, network_kwargs={"hidden_sizes": (10, 10)}
    )
    params = sampler.init_params(jax.random.key(0))
    positions = jax.random.normal(jax.random.key(1), (256, 2))
    state, _ = _train(sampler, params, positions, 1000, seed=2)

    # Fresh exact draws, the same for both samplers.
    _, covariance = toy.exact_moments(target)
    normal = np.asarray(jax.random.normal(jax.random.key(3), (4096, 2)))
    x = jnp.asarray(normal @ np.linalg.cholesky(covariance).T, jnp.float32)
    before = _expected_jump(sampler, params, jax.random.key(4), x)
    after = _expected_jump(sampler, state.params, jax.random.key(4), x)
    difference = after - before
    error = difference.std() / np.sqrt(len(difference))
    assert difference.mean() > 4 * error, (before.mean(), after.mean(), error)
    assert after.mean() > 2 * before.mean()


def test_gradients_flow_through_the_proposal_only():
    target = u1.target(2.0, (4, 4))
    sampler = l2hmc(target, num_layers=2, network_kwargs={"hidden_sizes": (8,)})
    params = sampler.init_params(jax.random.key(5))
    x = u1.random_links(jax.random.key(6), 8, (4, 4))

    def loss_of_positions(x):
        return loss_lib.loss_fn(params, sampler, jax.random.key(7), sampler.init(x))[0]

    def loss_of_params(p):
        return loss_lib.loss_fn(p, sampler, jax.random.key(7), sampler.init(x))[0]

    grad_x = jax.jit(jax.grad(loss_of_positions))(x)
    np.testing.assert_array_equal(grad_x, 0.0)
    grads = jax.jit(jax.grad(loss_of_params))(params)
    norms = jax.tree.map(lambda g: float(jnp.abs(g).sum()), grads)
    assert norms["log_eps_x"] > 0 and norms["log_eps_v"] > 0
    assert sum(jax.tree.leaves(norms["xnet"])) > 0


def test_rematerialised_layers_give_the_same_gradients():
    target = u1.target(2.0, (4, 4))
    kwargs = {"num_layers": 2, "network_kwargs": {"hidden_sizes": (8,)}}
    plain = l2hmc(target, **kwargs)
    remat = l2hmc(target, remat=True, **kwargs)
    params = plain.init_params(jax.random.key(8))
    x = u1.random_links(jax.random.key(9), 8, (4, 4))
    config = loss_lib.LossConfig(plaquette_weight=0.1, burn_in_weight=0.5)

    def grads(sampler):
        def loss(p):
            state = sampler.init(x)
            return loss_lib.loss_fn(p, sampler, jax.random.key(10), state, config)[0]

        return jax.jit(jax.grad(loss))(params)

    chex.assert_trees_all_close(grads(plain), grads(remat), rtol=1e-5, atol=1e-6)


def test_a_beta_schedule_does_not_recompile_the_train_step():
    size = (4, 4)
    sampler = l2hmc(
        u1.target(1.0, size), num_layers=2, network_kwargs={"hidden_sizes": (8,)}
    )
    optimizer = train.make_optimizer(1e-3)
    step = train.make_train_step(
        sampler, optimizer, target_fn=lambda beta: u1.target(beta, size), jit=False
    )
    counted = jax.jit(chex.assert_max_traces(step, n=1))
    params = sampler.init_params(jax.random.key(11))
    state = train.init_train_state(
        params, optimizer, u1.random_links(jax.random.key(12), 8, size)
    )
    betas = train.beta_schedule(6, 1.0, 3.0, num_eras=3)
    for i, beta in enumerate(betas):
        batch = train.TrainBatch(jax.random.key(i), jnp.float32(beta))
        state, metrics = counted(state, batch)
    assert int(state.step) == 6
    assert set(metrics) >= {"loss", "acceptance", "dq_int", "dq_sin", "eps_x"}
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_train_step_moves_the_chains_by_metropolis_hastings():
    size = (4, 4)
    sampler = l2hmc(
        u1.target(2.0, size), num_layers=2, network_kwargs={"hidden_sizes": (8,)}
    )
    params = sampler.init_params(jax.random.key(13))
    positions = u1.random_links(jax.random.key(14), 16, size)
    state, history = _train(sampler, params, positions, 3, seed=15)
    moved = np.abs(np.asarray(state.positions - positions)).sum(axis=(1, 2, 3)) > 0
    assert moved.any()
    # Every chain either kept its links or took a proposal; links stay wrapped.
    assert np.all(np.abs(np.asarray(state.positions)) <= np.pi)
    assert len(history) == 3


def test_beta_schedules():
    np.testing.assert_allclose(train.beta_schedule(5, 1.0, 3.0), [1, 1.5, 2, 2.5, 3])
    eras = train.beta_schedule(7, 1.0, 3.0, num_eras=3)
    np.testing.assert_allclose(eras, [1, 1, 2, 2, 3, 3, 3])
    np.testing.assert_array_equal(train.era_starts(eras), [0, 2, 4])
    with pytest.raises(ValueError, match="beta_init"):
        train.beta_schedule(5, -1.0, 3.0)
    with pytest.raises(ValueError, match="num_eras"):
        train.beta_schedule(5, 1.0, 3.0, num_eras=6)
    with pytest.raises(ValueError, match="num_steps"):
        train.beta_schedule(0, 1.0, 3.0)


def test_optimizer_options():
    with pytest.raises(ValueError, match="learning_rate"):
        train.make_optimizer(-1.0)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.full(3, 100.0)}
    for optimizer in (
        train.make_optimizer(1e-2, clip_norm=None),
        train.make_optimizer(1e-2, decay_steps=10, warmup_steps=5),
        train.make_optimizer(optax.cosine_decay_schedule(1e-2, 100)),
    ):
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        assert np.all(np.isfinite(np.asarray(updates["w"])))


def test_step_sizes_can_have_their_own_learning_rate():
    sampler = l2hmc(u1.target(2.0, (4, 4)), 2, network_kwargs={"hidden_sizes": (4,)})
    params = sampler.init_params(jax.random.key(0))
    grads = jax.tree.map(jnp.ones_like, params)
    optimizer = train.make_optimizer(1e-4, clip_norm=None, step_size_learning_rate=1e-2)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    # Adam's first step moves every parameter by its learning rate.
    for name in ("log_eps_x", "log_eps_v"):
        np.testing.assert_allclose(updates[name], -1e-2, rtol=1e-4)
    for leaf in jax.tree.leaves((updates["xnet"], updates["vnet"])):
        np.testing.assert_allclose(leaf, -1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="step_size_learning_rate"):
        train.make_optimizer(1e-3, step_size_learning_rate=0.0)
    with pytest.raises(ValueError, match="L2HMC parameters"):
        optimizer.init(jnp.ones(3))


def test_hmc_warmup_equilibrates_at_the_era_beta():
    size = (4, 4)
    warmup = train.make_hmc_warmup(lambda beta: u1.target(beta, size), 200, 5)
    hot = u1.random_links(jax.random.key(16), 256, size)
    beta = 3.0
    cold = warmup(jax.random.key(17), hot, jnp.float32(beta), jnp.float32(0.2))
    plaquette = np.asarray(u1.mean_plaquette(cold), np.float64)
    # Independent chains: an iid standard error.
    error = plaquette.std() / np.sqrt(len(plaquette))
    exact = u1_exact.mean_plaquette(beta, size)
    assert abs(plaquette.mean() - exact) < 4 * error, (plaquette.mean(), exact)


def test_hmc_warmup_with_one_key_per_chain_does_not_depend_on_the_split():
    # What makes sharded and multi-process warmups agree: a chain's moves
    # depend on its own key and position only.
    size = (4, 4)
    warmup = train.make_hmc_warmup(lambda beta: u1.target(beta, size), 3, 2)
    positions = u1.random_links(jax.random.key(22), 8, size)
    keys = jax.random.split(jax.random.key(23), 8)
    beta, step_size = jnp.float32(2.0), jnp.float32(0.2)
    whole = warmup(keys, positions, beta, step_size)
    halves = [
        warmup(keys[i : i + 4], positions[i : i + 4], beta, step_size) for i in (0, 4)
    ]
    np.testing.assert_array_equal(whole, np.concatenate(halves))
    assert not np.array_equal(whole, positions)


def test_trained_sampler_is_exact_on_u1():
    beta, size = 2.0, (4, 4)
    target = u1.target(beta, size)
    sampler = l2hmc(
        target, num_layers=2, step_size=0.2, network_kwargs={"hidden_sizes": (32,)}
    )
    params = sampler.init_params(jax.random.key(18))
    positions = u1.random_links(jax.random.key(19), 64, size)
    config = loss_lib.LossConfig(scale=0.01)
    state, _ = _train(sampler, params, positions, 200, seed=20, loss_config=config)
    changed = jax.tree.map(lambda a, b: bool((a != b).any()), params, state.params)
    assert all(jax.tree.leaves(changed["xnet"]))
    _, trace = sample(
        jax.random.key(21), sampler, state.positions, 1500, params=state.params
    )
    _assert_exact_u1_observables(trace, beta, size, num_discarded=100)


def _per_chain_tunneling(charges) -> np.ndarray:
    charges = np.rint(np.asarray(charges, np.float64))
    return np.abs(np.diff(charges, axis=0)).mean(axis=0)


def test_training_on_u1_beats_hmc_with_the_same_leapfrog_layers():
    # 8 x 8 at beta = 3; L2HMC with N = 4 runs 2N = 8 layers per proposal,
    # against HMC with 8 leapfrog steps. In a scan of step sizes from 0.15 to
    # 0.28, HMC never tunnelled more than 0.16 per step (0.155 when tuned to
    # 0.8 acceptance). In six runs of this test with other seeds the trained
    # sampler tunnelled 0.208 to 0.211 per step, 1.28 to 1.32 times the best
    # HMC below and 16 to 19 standard errors above it; the margin asserted
    # is 1.2. Most of the gain comes from the per-layer step sizes: with the
    # networks frozen at zero a similar run reached 0.22.
    beta, size, num_steps = 3.0, (8, 8), 8
    target = u1.target(beta, size)
    start = u1.random_links(jax.random.key(30), 256, size)
    tuned = adaptation.find_step_size(jax.random.key(31), target, start, num_steps)
    positions = tuned.state.position

    def rates(algorithm, params=None):
        _, trace = sample(jax.random.key(32), algorithm, positions, 300, params=params)
        return trace, _per_chain_tunneling(trace["charge"])

    # The HMC baseline is tuned to 0.8 acceptance (DESIGN.md); longer steps
    # do not make it tunnel more, but the best of three is what L2HMC has
    # to beat.
    hmc_rates = {
        factor: rates(hmc(target, factor * tuned.step_size, num_steps))[1]
        for factor in (1.0, 1.2, 1.4)
    }
    best = max(hmc_rates, key=lambda factor: hmc_rates[factor].mean())

    sampler = l2hmc(
        target,
        num_steps // 2,
        step_size=tuned.step_size,
        network_kwargs={"hidden_sizes": (32, 32)},
    )
    params = sampler.init_params(jax.random.key(33))
    optimizer = train.make_optimizer(3e-4, step_size_learning_rate=1e-2)
    state = train.init_train_state(params, optimizer, positions[:64])
    step = train.make_train_step(sampler, optimizer, loss_lib.LossConfig(scale=0.01))
    for key in jax.random.split(jax.random.key(34), 300):
        state, _ = step(state, train.TrainBatch(key, jnp.float32(beta)))
    trace, l2hmc_rates = rates(sampler, state.params)

    difference = l2hmc_rates.mean() - hmc_rates[best].mean()
    error = np.hypot(l2hmc_rates.std(), hmc_rates[best].std()) / np.sqrt(256)
    summary = (l2hmc_rates.mean(), {k: v.mean() for k, v in hmc_rates.items()})
    assert difference > 4 * error, summary
    assert l2hmc_rates.mean() > 1.2 * hmc_rates[best].mean(), summary

    # The trained sampler is still exact.
    _assert_exact_u1_observables(trace, beta, size, num_discarded=50)
