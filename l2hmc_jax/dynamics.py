"""The generalized leapfrog of L2HMC: layers, their inverses and log-dets.

One layer maps ``(x, v)`` to ``(x', v')`` in four steps (DESIGN.md, section
4): a v-half-step, an x-update on the sites of a mask ``m``, one on ``1 - m``
and a second v-half-step. Each is an exactly invertible map whose Jacobian
log-determinant is known in closed form, so a proposal built from them can be
corrected exactly by Metropolis-Hastings for any network parameters.

Everything here is a pure function of ``(params, x, v)``; the `LeapfrogLayers`
object only holds the static structure (target, networks, masks).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from l2hmc_jax.targets.base import CIRCLE, Target, wrap

Array = jax.Array


def masks(event_shape: tuple[int, ...], num_layers: int) -> np.ndarray:
    """Fixed checkerboard masks, one per layer, shape ``(num_layers, *event)``.

    Site ``i`` of layer ``k`` is updated first when the parity of
    ``sum(i) + k`` is even; the parity alternates between layers so that
    each site is in turn updated first and second. The masks are computed in
    numpy from the shape alone, so they are identical on every device and
    every process.
    """
    parity = np.indices(event_shape).sum(axis=0)
    layers = np.arange(num_layers).reshape((num_layers,) + (1,) * len(event_shape))
    return ((parity + layers) % 2 == 0).astype(np.float32)


def _event_sum(x: Array, event_ndim: int) -> Array:
    return x.sum(axis=tuple(range(x.ndim - event_ndim, x.ndim)))


@dataclasses.dataclass(frozen=True, eq=False)
class LeapfrogLayers:
    """The static structure of ``num_layers`` generalized leapfrog layers.

    Attributes
    ----------
    target
        The `Target`; its manifold picks the x-update (circle or euclidean).
    xnet, vnet
        Flax modules called as ``net.apply(variables, features,
        step_features) -> (s, t, q)`` (see `l2hmc_jax.networks`).
    num_layers
        ``N``, the number of leapfrog layers of one direction.
    shared
        If True, one set of network parameters serves every layer, which is
        told its index by a one-hot ``step_features``; otherwise each layer
        has its own parameters, stacked along a leading axis.
    remat
        Rematerialise each layer in the backward pass (`jax.checkpoint`):
        training memory then grows with one layer, not ``N``.
    """

    target: Target
    xnet: nn.Module
    vnet: nn.Module
    num_layers: int
    shared: bool = False
    remat: bool = False

    @property
    def masks(self) -> np.ndarray:
        return masks(self.target.event_shape, self.num_layers)

    @property
    def event_ndim(self) -> int:
        return len(self.target.event_shape)

    def replace_target(self, target: Target) -> "LeapfrogLayers":
        """The same layers on another target of the same event shape.

        Used for a beta schedule: the parameters carry over unchanged.
        """
        if tuple(target.event_shape) != tuple(self.target.event_shape):
            raise ValueError(
                f"event shape {target.event_shape} differs from the layers' "
                f"{self.target.event_shape}"
            )
        return dataclasses.replace(self, target=target)

    # -- parameters --------------------------------------------------------

    def init_params(self, rng_key: Array, step_size=0.1, dtype=jnp.float32) -> dict:
        """Network parameters and per-layer step sizes.

        Parameters
        ----------
        rng_key
            A `jax.random.key`.
        step_size
            Initial value of every ``eps_x`` and ``eps_v``.
        dtype
            Dtype of the step sizes (the networks' own dtype is theirs).

        Returns
        -------
        dict
            ``{"xnet", "vnet", "log_eps_x", "log_eps_v"}``: step sizes are
            stored as logs, so they stay positive whatever the optimiser does.
        """
        key_x, key_v = jax.random.split(rng_key)
        shape = (1,) + tuple(self.target.event_shape)
        num_channels = 3 if self.target.manifold == CIRCLE else 2
        features = jnp.zeros(shape + (num_channels,), dtype)
        step_features = jnp.zeros((self.num_layers,), dtype) if self.shared else None

        def init(net, key):
            return net.init(key, features, step_features)

        if self.shared:
            xnet, vnet = init(self.xnet, key_x), init(self.vnet, key_v)
        else:
            keys_x = jax.random.split(key_x, self.num_layers)
            keys_v = jax.random.split(key_v, self.num_layers)
            xnet = jax.vmap(lambda key: init(self.xnet, key))(keys_x)
            vnet = jax.vmap(lambda key: init(self.vnet, key))(keys_v)
        log_eps = jnp.full((self.num_layers,), jnp.log(step_size), dtype)
        return {"xnet": xnet, "vnet": vnet, "log_eps_x": log_eps, "log_eps_v": log_eps}

    # -- the four steps of a layer -----------------------------------------

    def _features(self, x: Array, other: Array, mask=None) -> Array:
        if self.target.manifold == CIRCLE:
            cos, sin = jnp.cos(x), jnp.sin(x)
            if mask is not None:
                cos, sin = cos * mask, sin * mask
            parts = (cos, sin, other)
        else:
            parts = (x if mask is None else x * mask, other)
        return jnp.stack(parts, axis=-1)

    def force(self, x: Array) -> Array:
        """``F(x) = -grad log p(x)``, the force the v-updates use."""
        return -self.target.logdensity_grad_fn(x)

    def _v_net(self, layer, x, force):
        return self.vnet.apply(
            layer["vnet"], self._features(x, force), layer["step_features"]
        )

    def _x_net(self, layer, x, v, mask):
        return self.xnet.apply(
            layer["xnet"], self._features(x, v, 1 - mask), layer["step_features"]
        )

    def _v_step(self, layer, x, v, force):
        eps = jnp.exp(layer["log_eps_v"])
        s, t, q = self._v_net(layer, x, force)
        v = v * jnp.exp(0.5 * eps * s) - 0.5 * eps * (force * jnp.exp(eps * q) + t)
        return v, _event_sum(0.5 * eps * s, self.event_ndim)

    def _v_step_inverse(self, layer, x, v, force):
        eps = jnp.exp(layer["log_eps_v"])
        s, t, q = self._v_net(layer, x, force)
        v = (v + 0.5 * eps * (force * jnp.exp(eps * q) + t)) * jnp.exp(-0.5 * eps * s)
        return v, -_event_sum(0.5 * eps * s, self.event_ndim)

    def _x_step(self, layer, x, v, mask):
        eps = jnp.exp(layer["log_eps_x"])
        s, t, q = self._x_net(layer, x, v, mask)
        shift = eps * (v * jnp.exp(eps * q) + t)
        if self.target.manifold == CIRCLE:
            scale = jnp.exp(eps * s)
            y = wrap(2 * jnp.arctan(scale * jnp.tan(0.5 * x)) + shift)
            log_jac = _circle_log_jacobian(x, eps * s)
        else:
            y = x * jnp.exp(eps * s) + shift
            log_jac = eps * s
        x = mask * y + (1 - mask) * x
        return x, _event_sum(mask * log_jac, self.event_ndim)

    def _x_step_inverse(self, layer, x, v, mask):
        eps = jnp.exp(layer["log_eps_x"])
        # The network sees only the frozen sites and v, which this step does
        # not change, so it gives the same (s, t, q) as the forward step.
        s, t, q = self._x_net(layer, x, v, mask)
        shift = eps * (v * jnp.exp(eps * q) + t)
        if self.target.manifold == CIRCLE:
            y = 2 * jnp.arctan(jnp.exp(-eps * s) * jnp.tan(0.5 * (x - shift)))
            log_jac = -_circle_log_jacobian(y, eps * s)
        else:
            y = (x - shift) * jnp.exp(-eps * s)
            log_jac = -eps * s
        x = mask * y + (1 - mask) * x
        return x, _event_sum(mask * log_jac, self.event_ndim)

    # A layer takes the force at its input and returns the force at its
    # output, which is where the next layer starts: N layers evaluate it N
    # times, plus once at the start.

    def _layer(self, layer, x, v, force):
        mask = layer["mask"]
        v, ld_v1 = self._v_step(layer, x, v, force)
        x, ld_x1 = self._x_step(layer, x, v, mask)
        x, ld_x2 = self._x_step(layer, x, v, 1 - mask)
        force = self.force(x)
        v, ld_v2 = self._v_step(layer, x, v, force)
        return x, v, force, ld_v1 + ld_x1 + ld_x2 + ld_v2

    def _layer_inverse(self, layer, x, v, force):
        mask = layer["mask"]
        v, ld_v2 = self._v_step_inverse(layer, x, v, force)
        x, ld_x2 = self._x_step_inverse(layer, x, v, 1 - mask)
        x, ld_x1 = self._x_step_inverse(layer, x, v, mask)
        force = self.force(x)
        v, ld_v1 = self._v_step_inverse(layer, x, v, force)
        return x, v, force, ld_v1 + ld_x1 + ld_x2 + ld_v2

    # -- N layers ------------------------------------------------------------

    def _per_layer(self, params: dict, dtype) -> tuple[Any, dict]:
        """Splits ``params`` into what is shared and what `lax.scan` slices."""
        per_layer = {
            "mask": jnp.asarray(self.masks, dtype),
            "log_eps_x": params["log_eps_x"],
            "log_eps_v": params["log_eps_v"],
        }
        if self.shared:
            per_layer["step_features"] = jnp.eye(self.num_layers, dtype=dtype)
            shared = {"xnet": params["xnet"], "vnet": params["vnet"]}
        else:
            per_layer["xnet"], per_layer["vnet"] = params["xnet"], params["vnet"]
            shared = {}
        return shared, per_layer

    def transport(
        self,
        params: dict,
        x: Array,
        v: Array,
        *,
        inverse: bool = False,
        force: Array | None = None,
    ):
        """`forward` (or `inverse`), also taking and giving the force.

        Returns ``(x', v', logdet, F(x'))``. ``force``, if given, must be
        ``F(x)``: a caller that chains two runs (the merged proposal) or
        runs both directions from one ``x`` (the random proposal) passes the
        force it already has and saves an evaluation.
        """
        shared, per_layer = self._per_layer(params, x.dtype)
        batch_shape = x.shape[: x.ndim - self.event_ndim]
        layer_fn = self._layer_inverse if inverse else self._layer

        def body(carry, sliced):
            x, v, force, logdet = carry
            layer = {"step_features": None, **shared, **sliced}
            x, v, force, ld = layer_fn(layer, x, v, force)
            return (x, v, force, logdet + ld), None

        if self.remat:
            body = jax.checkpoint(body)
        if force is None:
            force = self.force(x)
        logdet = jnp.zeros(batch_shape, x.dtype)
        (x, v, force, logdet), _ = jax.lax.scan(
            body, (x, v, force, logdet), per_layer, reverse=inverse
        )
        return x, v, logdet, force

    def forward(self, params: dict, x: Array, v: Array):
        """Runs the ``N`` layers: ``(x, v) -> (x', v', log|det J|)``.

        ``x`` and ``v`` have shape ``batch_shape + event_shape``; the log-det
        has shape ``batch_shape``.
        """
        return self.transport(params, x, v)[:3]

    def inverse(self, params: dict, x: Array, v: Array):
        """The exact inverse of `forward`, with the log-det of the inverse."""
        return self.transport(params, x, v, inverse=True)[:3]


def _circle_log_jacobian(x: Array, log_scale: Array) -> Array:
    """``log d/dx [2 atan(e^a tan(x/2))] = a - log(cos^2(x/2) + e^(2a) sin^2(x/2))``."""
    half = 0.5 * x
    return log_scale - jnp.log(
        jnp.cos(half) ** 2 + jnp.exp(2 * log_scale) * jnp.sin(half) ** 2
    )
