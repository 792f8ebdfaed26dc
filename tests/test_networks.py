"""Tests of the x- and v-networks: shapes, initial zeros, independence of
chains, equivariance and lattice-size independence of the convolutional
network, dtypes and argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2hmc_jax.networks import ConvNetwork, MLPNetwork, make_network

EVENT_SHAPE = (2, 4, 4)
NUM_CHANNELS = 3
# Small layers keep the file fast; the defaults are exercised by the shape test.
SMALL = {"mlp": {"hidden_sizes": (8, 8)}, "conv": {"channels": (4, 4)}}
KINDS = ["mlp", "conv"]


def _network(kind, event_shape=EVENT_SHAPE, **kwargs):
    return make_network(kind, event_shape, **{**SMALL[kind], **kwargs})


def _features(seed, batch_shape, event_shape=EVENT_SHAPE, dtype=jnp.float32):
    shape = tuple(batch_shape) + tuple(event_shape) + (NUM_CHANNELS,)
    return jax.random.normal(jax.random.key(seed), shape, dtype)


def _init(net, features, step_features=None, seed=0):
    return net.init(jax.random.key(seed), features, step_features)


def _assert_outputs_close(actual, expected, rtol=1e-5, atol=1e-6):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_are_exactly_zero_at_init(kind):
    net = _network(kind)
    features = _features(1, (5,))
    s, t, q = net.apply(_init(net, features), features, None)
    for out in (s, t, q):
        assert out.shape == (5,) + EVENT_SHAPE
        assert np.all(np.asarray(out) == 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_are_nonzero_with_output_scale(kind):
    net = _network(kind, output_scale=1.0)
    features = _features(1, (5,))
    for out in net.apply(_init(net, features), features, None):
        assert np.all(np.isfinite(out))
        assert np.any(np.asarray(out) != 0.0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 3)])
def test_output_shapes_follow_batch_shape(kind, batch_shape):
    net = make_network(kind, EVENT_SHAPE)  # default layer sizes
    variables = _init(net, _features(0, (1,)))
    s, t, q = net.apply(variables, _features(1, batch_shape), None)
    for out in (s, t, q):
        assert out.shape == batch_shape + EVENT_SHAPE
        assert out.dtype == jnp.float32


@pytest.mark.parametrize("event_shape", [(), (3,), (2, 5)])
def test_mlp_accepts_any_event_shape(event_shape):
    net = _network("mlp", event_shape, output_scale=1.0)
    features = _features(0, (4,), event_shape)
    for out in net.apply(_init(net, features), features, None):
        assert out.shape == (4,) + event_shape


@pytest.mark.parametrize("kind", KINDS)
def test_chains_do_not_influence_each_other(kind):
    # Coupled chains (batch norm, dropout) would make one chain's proposal
    # depend on the others and break detailed balance.
    net = _network(kind, output_scale=1.0)
    features = _features(2, (4,))
    variables = _init(net, features)
    batched = net.apply(variables, features, None)
    for i in range(features.shape[0]):
        alone = net.apply(variables, features[i], None)
        _assert_outputs_close(alone, [out[i] for out in batched])


@pytest.mark.parametrize("kind", KINDS)
def test_step_features_change_the_output(kind):
    num_layers = 3
    net = _network(kind, output_scale=1.0)
    features = _features(3, (2,))
    variables = _init(net, features, jnp.zeros(num_layers))
    steps = jnp.eye(num_layers)
    first = net.apply(variables, features, steps[0])
    second = net.apply(variables, features, steps[1])
    for a, b in zip(first, second, strict=True):
        assert a.shape == (2,) + EVENT_SHAPE
        assert not np.allclose(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_jit_and_vmap_agree_with_batched_apply(kind):
    net = _network(kind, output_scale=1.0)
    features = _features(4, (3,))
    step = jnp.eye(2)[1]
    variables = _init(net, features, step)
    expected = net.apply(variables, features, step)

    _assert_outputs_close(jax.jit(net.apply)(variables, features, step), expected)
    per_chain = jax.vmap(net.apply, in_axes=(None, 0, None))(variables, features, step)
    _assert_outputs_close(per_chain, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_stack_over_layers_with_vmap(kind):
    # Per-layer networks are initialised and applied with a leading layer axis.
    net = _network(kind, output_scale=1.0)
    features = _features(5, (2,))
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.vmap(lambda key: net.init(key, features, None))(keys)
    outputs = jax.vmap(net.apply, in_axes=(0, None, None))(stacked, features, None)
    for layer in range(3):
        variables = jax.tree.map(lambda leaf, i=layer: leaf[i], stacked)
        expected = net.apply(variables, features, None)
        _assert_outputs_close([out[layer] for out in outputs], expected)


@pytest.mark.parametrize("kind", KINDS)
def test_float64_parameters_give_float64_outputs(kind):
    with jax.enable_x64(True):
        net = _network(
            kind, output_scale=1.0, dtype=jnp.float64, param_dtype=jnp.float64
        )
        features = _features(6, (2,), dtype=jnp.float64)
        variables = _init(net, features, jnp.zeros(2, jnp.float64))
        for leaf in jax.tree.leaves(variables):
            assert leaf.dtype == jnp.float64
        outputs = net.apply(variables, features, jnp.eye(2, dtype=jnp.float64)[0])
        for out in outputs:
            assert out.dtype == jnp.float64


def test_heads_are_bounded_by_their_scales():
    # A large output scale saturates the tanh: |s| and |q| stay below
    # exp(lambda) = 1 at init while the linear t-head does not.
    net = _network("mlp", output_scale=1e4)
    features = _features(7, (8,))
    s, t, q = net.apply(_init(net, features), features, None)
    assert np.max(np.abs(s)) <= 1.0 and np.max(np.abs(q)) <= 1.0
    assert np.max(np.abs(t)) > 1.0


def test_lambda_scales_the_bounded_heads():
    net = _network("conv", output_scale=1.0)
    features = _features(8, (2,))
    variables = _init(net, features)
    s, t, q = net.apply(variables, features, None)
    params = dict(variables["params"])
    params["lambda_s"] = jnp.log(jnp.float32(2.0))
    params["lambda_q"] = jnp.log(jnp.float32(0.5))
    s2, t2, q2 = net.apply({"params": params}, features, None)
    _assert_outputs_close((s2, t2, q2), (2 * s, t, 0.5 * q))


def test_activation_by_name_matches_callable():
    features = _features(9, (3,))
    by_name = _network("mlp", activation="tanh", output_scale=1.0)
    by_callable = _network("mlp", activation=jnp.tanh, output_scale=1.0)
    variables = _init(by_name, features)
    _assert_outputs_close(
        by_name.apply(variables, features, None),
        by_callable.apply(variables, features, None),
    )


def test_conv_parameters_apply_to_other_lattice_sizes():
    net = _network("conv", output_scale=1.0)
    variables = _init(net, _features(0, (1,)), jnp.zeros(2))
    bigger = (2, 6, 8)
    features = _features(10, (3,), bigger)
    step = jnp.eye(2)[0]
    s, t, q = net.apply(variables, features, step)
    for out in (s, t, q):
        assert out.shape == (3,) + bigger
    # A network built for the bigger lattice has the same parameters.
    other = _network("conv", bigger, output_scale=1.0)
    _assert_outputs_close(other.apply(variables, features, step), (s, t, q))


@pytest.mark.parametrize("lattice_axis", [0, 1])
@pytest.mark.parametrize("shift", [1, 3])
def test_conv_is_equivariant_under_periodic_shifts(lattice_axis, shift):
    net = _network("conv", (2, 6, 8), output_scale=1.0)
    features = _features(11, (2,), (2, 6, 8))
    step = jnp.eye(2)[1]
    variables = _init(net, features, step)
    outputs = net.apply(variables, features, step)
    # Lattice axis 0 is axis -3 of the features (before the channels) and
    # axis -2 of the outputs.
    rolled = jnp.roll(features, shift, axis=lattice_axis - 3)
    rolled_outputs = net.apply(variables, rolled, step)
    expected = [jnp.roll(out, shift, axis=lattice_axis - 2) for out in outputs]
    _assert_outputs_close(rolled_outputs, expected)


@pytest.mark.parametrize(
    "kind, event_shape, kwargs, match",
    [
        ("resnet", EVENT_SHAPE, {}, "resnet"),
        ("conv", (4, 4), {}, r"\(4, 4\)"),
        ("conv", (3, 4, 4), {}, r"\(3, 4, 4\)"),
        ("mlp", EVENT_SHAPE, {"hidden_sizes": ()}, "hidden_sizes"),
        ("mlp", EVENT_SHAPE, {"hidden_sizes": (8, -1)}, r"-1"),
        ("conv", EVENT_SHAPE, {"channels": ()}, "channels"),
        ("conv", EVENT_SHAPE, {"channels": (0,)}, "channels"),
        ("conv", EVENT_SHAPE, {"kernel_size": 0}, "kernel_size"),
        ("mlp", EVENT_SHAPE, {"activation": "sigmoidal"}, "sigmoidal"),
        ("conv", EVENT_SHAPE, {"activation": 3}, "activation"),
        ("mlp", EVENT_SHAPE, {"output_scale": -1.0}, "output_scale"),
        ("mlp", (2, 0), {}, "event_shape"),
    ],
)
def test_make_network_rejects_bad_arguments(kind, event_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_network(kind, event_shape, **kwargs)


@pytest.mark.parametrize("network", [MLPNetwork, ConvNetwork])
def test_features_of_the_wrong_shape_are_rejected(network):
    net = network(EVENT_SHAPE)
    # Channels missing: the trailing axes are the event itself.
    features = jnp.zeros((5, 3, 4, 4))
    with pytest.raises(ValueError, match="features"):
        net.init(jax.random.key(0), features, None)


def test_step_features_must_be_one_dimensional():
    net = _network("mlp")
    features = _features(0, (2,))
    with pytest.raises(ValueError, match="step_features"):
        net.init(jax.random.key(0), features, jnp.zeros((2, 3)))
