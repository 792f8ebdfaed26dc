"""Checkpointer options not covered by the example's end-to-end tests."""

import numpy as np

from l2hmc_jax.checkpoint import Checkpointer


def test_single_process_checkpointer_creates_its_directory_and_round_trips(
    tmp_path,
):
    # Under jax.distributed the option skips Orbax's barriers (the U(1)
    # example under mpirun tests that); alone it must behave as the default.
    directory = tmp_path / "nested" / "checkpoints"
    tree = {"params": np.arange(6, dtype=np.float32), "step": np.asarray(3, np.int32)}
    with Checkpointer(directory, single_process=True) as checkpointer:
        checkpointer.save(3, tree, {"size": [4, 4]})
    assert directory.is_dir()
    with Checkpointer(directory, single_process=True) as checkpointer:
        assert checkpointer.all_steps() == [3]
        restored, metadata = checkpointer.restore(tree, expected={"size": [4, 4]})
    np.testing.assert_array_equal(restored["params"], tree["params"])
    assert int(restored["step"]) == 3
    assert metadata == {"size": [4, 4]}
