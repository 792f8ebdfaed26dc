"""The L2HMC kernel: a learned, exactly reversible proposal plus Metropolis-Hastings."""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from l2hmc_jax import networks
from l2hmc_jax.dynamics import LeapfrogLayers
from l2hmc_jax.kernels import base, random
from l2hmc_jax.targets.base import Target

Array = jax.Array

PROPOSALS = ("merged", "random")


class L2HMCState(NamedTuple):
    """What carries over from one L2HMC step to the next."""

    position: Array
    logdensity: Array


class L2HMCInfo(NamedTuple):
    """Per-step diagnostics, one entry per chain.

    Attributes
    ----------
    momentum
        The momentum drawn at the start of the step.
    acceptance_rate
        ``min(1, exp(H(x, v) - H(x', v') + logdet))``, 0 if not finite.
    is_accepted
        Whether the proposal was accepted.
    logdet
        ``log |det J|`` of the proposal map at ``(x, v)``.
    energy
        Total energy of the proposal, ``H(x', v')``.
    energy_change
        ``H(x', v') - H(x, v)``.
    direction
        ``+1`` where the proposal ran the layers forward, ``-1`` where it ran
        them inverse (always ``+1`` for the merged proposal).
    """

    momentum: Array
    acceptance_rate: Array
    is_accepted: Array
    logdet: Array
    energy: Array
    energy_change: Array
    direction: Array


class Proposal(NamedTuple):
    """A proposal before the accept/reject decision, differentiable in params."""

    position: Array
    logdensity: Array
    log_ratio: Array
    acceptance_rate: Array
    info: L2HMCInfo


class L2HMC:
    """An L2HMC sampler: its layers, proposal kind and initial step size.

    Build it with `l2hmc`. It is hashable by identity, so it can be a static
    argument of `jax.jit` and of `l2hmc_jax.sample`.

    Attributes
    ----------
    layers
        The `LeapfrogLayers` (target, networks, masks).
    proposal
        ``"merged"``: ``N`` layers forward, flip ``v``, the ``N`` inverse
        layers in reverse (an involution of ``2N`` layers). ``"random"``: a
        direction ``d = +-1`` per chain and ``N`` layers forward or inverse.
    step_size
        Initial value of the trainable step sizes.
    param_dtype
        Dtype of the step sizes.
    """

    def __init__(self, layers: LeapfrogLayers, proposal, step_size, param_dtype):
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
        self.layers = layers
        self.proposal = proposal
        self.step_size = step_size
        self.param_dtype = param_dtype

    @property
    def target(self) -> Target:
        return self.layers.target

    @property
    def num_layers(self) -> int:
        return self.layers.num_layers

    @property
    def force_evaluations(self) -> int:
        """Force evaluations per step, ``2N + 1``.

        A layer evaluates the force once, at its output, where the next layer
        starts; one more evaluation at the start serves both directions (the
        ``2N`` layers of the merged proposal, or the ``N`` forward and ``N``
        inverse layers that the random proposal computes for every chain).
        The accept/reject step needs no force.
        """
        return 2 * self.num_layers + 1

    def replace_target(self, target: Target) -> "L2HMC":
        """The same sampler on another target (for instance a new beta)."""
        return L2HMC(
            self.layers.replace_target(target),
            self.proposal,
            self.step_size,
            self.param_dtype,
        )

    def init_params(self, rng_key: Array) -> dict:
        """Network parameters and per-layer log step sizes, as a pytree."""
        return self.layers.init_params(rng_key, self.step_size, self.param_dtype)

    def init(self, position: Array) -> L2HMCState:
        """The state at ``position`` (one chain or a leading chain axis)."""
        position = jnp.asarray(position)
        self.target.batch_shape(position)
        return L2HMCState(position, self.target.logdensity_fn(position))

    def forward(self, params: dict, x: Array, v: Array):
        """``N`` leapfrog layers forward: ``(x', v', logdet)``."""
        return self.layers.forward(params, x, v)

    def inverse(self, params: dict, x: Array, v: Array):
        """The exact inverse of `forward`: ``(x, v, logdet)``."""
        return self.layers.inverse(params, x, v)

    def proposal_map(self, params: dict, x: Array, v: Array, direction=None):
        """The deterministic proposal map ``(x, v) -> (x', v', logdet)``.

        For the merged proposal ``direction`` is ignored; for the random one
        it is an array of ``+-1`` per chain.
        """
        layers = self.layers
        if self.proposal == "merged":
            x1, v1, logdet1, force = layers.transport(params, x, v)
            x2, v2, logdet2, _ = layers.transport(
                params, x1, -v1, inverse=True, force=force
            )
            return x2, v2, logdet1 + logdet2
        force = layers.force(x)
        x_f, v_f, logdet_f, _ = layers.transport(params, x, v, force=force)
        x_b, v_b, logdet_b, _ = layers.transport(
            params, x, v, inverse=True, force=force
        )
        forward = direction > 0
        pick = base.select_chains(forward)
        return pick(x_f, x_b), pick(v_f, v_b), jnp.where(forward, logdet_f, logdet_b)

    def propose(self, rng_key: Array, state: L2HMCState, params: dict) -> Proposal:
        """Draws a momentum (and a direction) and makes the proposal.

        The key is split as `hmc` splits it, so that with zero network outputs
        the merged proposal of ``N`` layers is HMC with ``2N`` leapfrog steps,
        step for step.
        """
        key_momentum, key_accept = random.split(rng_key)
        x = state.position
        batch_shape = self.target.batch_shape(x)
        v = random.draw(
            lambda key, s: jax.random.normal(key, s, x.dtype),
            key_momentum,
            x.shape,
            batch_shape,
        )
        direction = jnp.ones(batch_shape, jnp.int32)
        if self.proposal == "random":
            # Derived from the accept key, so that the merged proposal
            # splits its key exactly as `hmc` does.
            key_direction = random.split(key_accept, 3)[2]
            forward = random.draw(
                lambda key, s: jax.random.bernoulli(key, 0.5, s),
                key_direction,
                batch_shape,
                batch_shape,
            )
            direction = jnp.where(forward, 1, -1)
        x_new, v_new, logdet = self.proposal_map(params, x, v, direction)
        logdensity_new = self.target.logdensity_fn(x_new)
        energy = -state.logdensity + base.kinetic_energy(self.target, v)
        energy_new = -logdensity_new + base.kinetic_energy(self.target, v_new)
        log_ratio = energy - energy_new + logdet
        p_accept = base.acceptance_probability(log_ratio)
        info = L2HMCInfo(
            v,
            p_accept,
            jnp.zeros_like(p_accept, bool),
            logdet,
            energy_new,
            energy_new - energy,
            direction,
        )
        return Proposal(x_new, logdensity_new, log_ratio, p_accept, info)

    def step(self, rng_key: Array, state: L2HMCState, params: dict):
        """One L2HMC transition: ``(state, info)``."""
        proposal = self.propose(rng_key, state, params)
        _, key_accept = random.split(rng_key)
        new_state, p_accept, is_accepted = base.metropolis_hastings(
            key_accept,
            self.target,
            proposal.log_ratio,
            state,
            L2HMCState(proposal.position, proposal.logdensity),
        )
        return new_state, proposal.info._replace(is_accepted=is_accepted)


def l2hmc(
    target: Target,
    num_layers: int = 4,
    *,
    step_size: float = 0.1,
    network: str = "mlp",
    network_kwargs: dict | None = None,
    shared: bool = False,
    proposal: str = "merged",
    remat: bool = False,
    param_dtype=jnp.float32,
) -> L2HMC:
    """An L2HMC sampler for ``target``; untrained, it is HMC.

    Parameters
    ----------
    target
        The `Target` to sample.
    num_layers
        ``N``, leapfrog layers per direction.
    step_size
        Initial value of the trainable step sizes ``eps_x``, ``eps_v``.
    network
        ``"mlp"`` or ``"conv"`` (lattice targets; usable on other sizes).
    network_kwargs
        Passed to `l2hmc_jax.networks.make_network` for both networks, e.g.
        ``{"hidden_sizes": (256, 256), "activation": "swish"}``.
    shared
        One network for all layers, told the layer index, instead of one per
        layer.
    proposal
        ``"merged"`` (default) or ``"random"``.
    remat
        Rematerialise each layer in the backward pass to save memory.
    param_dtype
        Dtype of the network parameters and step sizes.

    Returns
    -------
    L2HMC
        With ``init_params(rng_key)``, ``init(positions)``,
        ``step(rng_key, state, params)``, ``forward`` and ``inverse``.
    """
    if int(num_layers) != num_layers or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    kwargs = {"param_dtype": param_dtype, "dtype": param_dtype}
    kwargs.update(network_kwargs or {})
    xnet = networks.make_network(network, target.event_shape, **kwargs)
    vnet = networks.make_network(network, target.event_shape, **kwargs)
    layers = LeapfrogLayers(target, xnet, vnet, int(num_layers), shared, remat)
    return L2HMC(layers, proposal, float(step_size), param_dtype)
