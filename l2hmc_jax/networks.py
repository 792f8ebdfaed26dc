"""Flax networks that give the scale, translation and force scaling of L2HMC.

A network maps per-site input channels to three fields ``(s, t, q)`` on the
event (DESIGN.md, section 4)::

    s = exp(lambda_s) * tanh(W_s h + b_s)
    t = W_t h + b_t
    q = exp(lambda_q) * tanh(W_q h + b_q)

where ``h`` is the last hidden layer and ``lambda_s``, ``lambda_q`` are
learnable scalars. The ``tanh`` keeps the scales of the leapfrog bounded
(``exp(eps s)`` cannot overflow), and ``exp(lambda)`` lets training choose
how far from one they may go. The output layers start at zero by default, so
an untrained L2HMC sampler is exactly HMC.

Every network is called as ``net.apply(variables, features, step_features)``:

- ``features`` has shape ``batch_shape + event_shape + (C,)``, ``C`` input
  channels per site;
- ``step_features`` is None or a 1-D array (a one-hot of the layer index for
  a network shared by all layers);
- the result is ``(s, t, q)``, each of shape ``batch_shape + event_shape``.

Chains are processed independently: there is no batch normalisation and no
dropout, which would couple the chains of a batch and make the proposal of one
chain depend on the others, breaking detailed balance.
"""

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": nn.relu,
    "swish": nn.swish,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
}


def _check_activation(activation) -> None:
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected a callable or one "
                f"of {sorted(ACTIVATIONS)}"
            )
    elif not callable(activation):
        raise ValueError(f"activation must be a callable or a name, got {activation!r}")


def _activation_fn(activation) -> Callable[[Array], Array]:
    return ACTIVATIONS[activation] if isinstance(activation, str) else activation


def _is_positive_int(size) -> bool:
    return (
        isinstance(size, numbers.Integral) and not isinstance(size, bool) and size > 0
    )


def _check_sizes(name: str, sizes) -> None:
    sizes = tuple(sizes)
    if not sizes:
        raise ValueError(f"{name} must list at least one layer, got {sizes}")
    if not all(_is_positive_int(size) for size in sizes):
        raise ValueError(f"{name} must be positive integers, got {sizes}")


def _check_event_shape(event_shape) -> None:
    if not all(_is_positive_int(size) for size in event_shape):
        raise ValueError(
            f"event_shape must be positive integers, got {tuple(event_shape)}"
        )


def _check_output_scale(output_scale) -> None:
    if not output_scale >= 0:
        raise ValueError(f"output_scale must be >= 0, got {output_scale}")


def _check_lattice_event(event_shape) -> None:
    event_shape = tuple(event_shape)
    if len(event_shape) != 3 or event_shape[0] != 2:
        raise ValueError(
            "a convolutional network needs lattice events of shape (2, L0, L1), "
            f"got {event_shape}"
        )


def _output_kernel_init(output_scale: float):
    # Zero weights make (s, t, q) vanish identically at initialisation, which
    # is what turns an untrained sampler into plain HMC.
    if output_scale == 0:
        return nn.initializers.zeros
    return nn.initializers.variance_scaling(output_scale, "fan_in", "truncated_normal")


def _split_batch(features: Array, event_ndim: int) -> tuple[tuple[int, ...], Array]:
    """Flattens the batch axes of ``features`` into one leading axis."""
    if features.ndim < event_ndim + 1:
        raise ValueError(
            f"features of shape {features.shape} lack the event axes and the "
            f"channel axis ({event_ndim + 1} trailing axes)"
        )
    batch_shape = features.shape[: features.ndim - event_ndim - 1]
    return batch_shape, features.reshape((-1,) + features.shape[len(batch_shape) :])


def _check_step_features(step_features) -> None:
    if step_features is not None and jnp.ndim(step_features) != 1:
        raise ValueError(
            f"step_features must be None or 1-D, got shape {jnp.shape(step_features)}"
        )


def _bounded_heads(module: nn.Module, s: Array, t: Array, q: Array):
    """Applies ``exp(lambda) * tanh`` to the s- and q-heads of ``module``.

    Must be called from the compact ``__call__`` of ``module``, which owns the
    two scalars.
    """
    lambda_s = module.param("lambda_s", nn.initializers.zeros, (), module.param_dtype)
    lambda_q = module.param("lambda_q", nn.initializers.zeros, (), module.param_dtype)
    s, t, q, lambda_s, lambda_q = nn.dtypes.promote_dtype(
        s, t, q, lambda_s, lambda_q, dtype=module.dtype
    )
    return jnp.exp(lambda_s) * jnp.tanh(s), t, jnp.exp(lambda_q) * jnp.tanh(q)


class MLPNetwork(nn.Module):
    """A fully connected network on the whole configuration.

    The event and its channels are flattened into one vector per
    configuration, so every output site sees every input site.

    Attributes
    ----------
    event_shape
        The trailing axes of the inputs that form one configuration.
    hidden_sizes
        Widths of the hidden layers, at least one.
    activation
        A callable, or one of ``'relu'``, ``'swish'``, ``'tanh'``, ``'gelu'``.
    output_scale
        Variance scale of the output layers' initial kernels; 0 initialises
        them to zero, so that the network outputs exactly zero.
    dtype
        Dtype of the computation (and of the outputs).
    param_dtype
        Dtype of the parameters.
    """

    event_shape: tuple[int, ...]
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str | Callable[[Array], Array] = nn.swish
    output_scale: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        _check_event_shape(self.event_shape)
        _check_sizes("hidden_sizes", self.hidden_sizes)
        _check_activation(self.activation)
        _check_output_scale(self.output_scale)
        super().__post_init__()

    @nn.compact
    def __call__(self, features: Array, step_features: Array | None = None):
        """Computes ``(s, t, q)``; see the module docstring for the shapes."""
        event_shape = tuple(self.event_shape)
        batch_shape, h = _split_batch(features, len(event_shape))
        if h.shape[1:-1] != event_shape:
            raise ValueError(
                f"features of shape {features.shape} do not end with the event "
                f"shape {event_shape} followed by a channel axis"
            )
        _check_step_features(step_features)
        h = h.reshape((h.shape[0], -1))
        if step_features is not None:
            steps = jnp.broadcast_to(step_features, (h.shape[0],) + step_features.shape)
            h = jnp.concatenate([h, steps.astype(h.dtype)], axis=-1)

        activation = _activation_fn(self.activation)
        for i, size in enumerate(self.hidden_sizes):
            dense = nn.Dense(
                size, dtype=self.dtype, param_dtype=self.param_dtype, name=f"hidden_{i}"
            )
            h = activation(dense(h))

        num_sites = math.prod(event_shape)
        kernel_init = _output_kernel_init(self.output_scale)

        def head(name):
            dense = nn.Dense(
                num_sites,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=kernel_init,
                name=name,
            )
            return dense(h).reshape(batch_shape + event_shape)

        return _bounded_heads(self, head("s"), head("t"), head("q"))


class ConvNetwork(nn.Module):
    """A convolutional network with periodic padding on a 2D lattice.

    The two link directions and the input channels of a site are stacked into
    the channel axis, so a configuration becomes an image of shape
    ``(L0, L1, 2 C)``. Periodic (circular) padding makes the network
    equivariant under lattice translations, and its parameters do not depend
    on the lattice size: one set of parameters can be applied to lattices of
    any ``(L0, L1)``.

    Attributes
    ----------
    event_shape
        ``(2, L0, L1)``. Only its rank and the direction axis are used at call
        time, so the module also accepts lattices of another size.
    channels
        Channels of the hidden convolutions, at least one.
    kernel_size
        Side of the square convolution kernels.
    activation
        A callable, or one of ``'relu'``, ``'swish'``, ``'tanh'``, ``'gelu'``.
    output_scale
        Variance scale of the output convolution's initial kernel; 0
        initialises it to zero, so that the network outputs exactly zero.
    dtype
        Dtype of the computation (and of the outputs).
    param_dtype
        Dtype of the parameters.
    """

    event_shape: tuple[int, ...]
    channels: Sequence[int] = (16, 16)
    kernel_size: int = 3
    activation: str | Callable[[Array], Array] = nn.swish
    output_scale: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        _check_event_shape(self.event_shape)
        _check_lattice_event(self.event_shape)
        _check_sizes("channels", self.channels)
        if not _is_positive_int(self.kernel_size):
            raise ValueError(
                f"kernel_size must be a positive integer, got {self.kernel_size!r}"
            )
        _check_activation(self.activation)
        _check_output_scale(self.output_scale)
        super().__post_init__()

    @nn.compact
    def __call__(self, features: Array, step_features: Array | None = None):
        """Computes ``(s, t, q)``; see the module docstring for the shapes."""
        if features.ndim < 4 or features.shape[-4] != 2:
            raise ValueError(
                f"features of shape {features.shape} do not end with a lattice "
                "event (2, L0, L1) followed by a channel axis"
            )
        _check_step_features(step_features)
        batch_shape, h = _split_batch(features, 3)
        num_chains, _, size0, size1, num_channels = h.shape
        h = jnp.moveaxis(h, 1, 3).reshape((num_chains, size0, size1, 2 * num_channels))
        if step_features is not None:
            # Constant channels: they carry the layer index without breaking
            # translation equivariance.
            steps = jnp.broadcast_to(
                step_features, (num_chains, size0, size1) + step_features.shape
            )
            h = jnp.concatenate([h, steps.astype(h.dtype)], axis=-1)

        activation = _activation_fn(self.activation)
        kernel = (self.kernel_size, self.kernel_size)
        for i, width in enumerate(self.channels):
            conv = nn.Conv(
                width,
                kernel,
                padding="CIRCULAR",
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"conv_{i}",
            )
            h = activation(conv(h))

        output = nn.Conv(
            3 * 2,
            kernel,
            padding="CIRCULAR",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=_output_kernel_init(self.output_scale),
            name="output",
        )
        h = output(h).reshape((num_chains, size0, size1, 3, 2))
        # (chain, L0, L1, head, direction) -> (head, chain, direction, L0, L1)
        h = jnp.moveaxis(h, (3, 4), (0, 2))
        s, t, q = (head.reshape(batch_shape + (2, size0, size1)) for head in h)
        return _bounded_heads(self, s, t, q)


def make_network(kind: str, event_shape: Sequence[int], **kwargs) -> nn.Module:
    """Builds an x- or v-network.

    Parameters
    ----------
    kind
        ``'mlp'`` (`MLPNetwork`) or ``'conv'`` (`ConvNetwork`, lattice events
        ``(2, L0, L1)`` only).
    event_shape
        The shape of one configuration.
    **kwargs
        The other attributes of the chosen network (``hidden_sizes`` or
        ``channels``, ``activation``, ``output_scale``, ...).

    Returns
    -------
    flax.linen.Module
        A module called as ``net.apply(variables, features, step_features)``
        that returns ``(s, t, q)``.

    Raises
    ------
    ValueError
        For an unknown ``kind``, a convolutional network on an event that is
        not ``(2, L0, L1)``, empty or non-positive layer sizes, or an unknown
        activation name.
    """
    event_shape = tuple(event_shape)
    if kind == "mlp":
        if "hidden_sizes" in kwargs:
            kwargs["hidden_sizes"] = tuple(kwargs["hidden_sizes"])
        return MLPNetwork(event_shape, **kwargs)
    if kind == "conv":
        if "channels" in kwargs:
            kwargs["channels"] = tuple(kwargs["channels"])
        return ConvNetwork(event_shape, **kwargs)
    raise ValueError(f"unknown network kind {kind!r}; expected 'mlp' or 'conv'")
