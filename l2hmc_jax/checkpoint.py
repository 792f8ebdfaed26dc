"""Saving and restoring training state with Orbax, checked on the way back.

A checkpoint holds a pytree (a `l2hmc_jax.train.TrainState`, say) and a JSON
dict of metadata describing what the pytree belongs to: the lattice size,
the network shape, the precision. `Checkpointer.restore` refuses a
checkpoint whose metadata differs from what the caller expects, naming both
values, instead of failing later inside Orbax with a shape error, and it
compares a CRC-32 of every restored array with the one stored at save time,
so that a damaged file cannot pass for trained parameters.
"""

import os
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp

_CHECKSUM_KEY = "_leaf_crc32"


class CheckpointError(ValueError):
    """A checkpoint that does not match the caller's setup, or cannot be read."""


def tree_checksums(tree) -> list[int]:
    """A CRC-32 of the bytes of each leaf of ``tree``, in leaf order."""
    return [
        zlib.crc32(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
        for leaf in jax.tree.leaves(tree)
    ]


class Checkpointer:
    """Numbered checkpoints of one pytree structure in a directory.

    Parameters
    ----------
    directory
        Where the step directories live; created if missing.
    max_to_keep
        Older checkpoints beyond this many are deleted after each save.
    single_process
        This process alone uses the checkpointer, even when JAX spans several
        processes (`jax.distributed`): one process saves, and each may
        restore on its own. Otherwise Orbax expects every process in every
        save and restore, and waits for them at barriers.

    Notes
    -----
    Saving is synchronous: when `save` returns, the checkpoint is complete on
    disk. Orbax writes into a temporary directory and renames it when done,
    so a process killed during a save leaves no half-written step behind.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        max_to_keep: int = 3,
        single_process: bool = False,
    ):
        if int(max_to_keep) < 1:
            raise ValueError(f"max_to_keep must be at least 1, got {max_to_keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        processes = ocp.options.MultiprocessingOptions()
        if single_process:
            # A set of one process that includes this one skips every barrier;
            # Orbax then leaves creating the directory to the caller.
            me = jax.process_index()
            processes = ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me}
            )
            os.makedirs(self.directory, exist_ok=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(max_to_keep),
            enable_async_checkpointing=False,
            create=not single_process,
            multiprocessing_options=processes,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        """The steps of the complete checkpoints, in increasing order."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None if there is none."""
        return self._manager.latest_step()

    def save(self, step: int, tree, metadata: dict | None = None) -> None:
        """Saves ``tree`` and ``metadata`` (JSON-serializable) as ``step``."""
        metadata = dict(metadata or {})
        metadata[_CHECKSUM_KEY] = tree_checksums(tree)
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree),
                metadata=ocp.args.JsonSave(metadata),
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def metadata(self, step: int | None = None) -> dict:
        """The metadata saved with ``step`` (the latest by default)."""
        metadata = self._read_metadata(self._resolve(step))
        metadata.pop(_CHECKSUM_KEY, None)
        return metadata

    def restore(self, like, step: int | None = None, expected: dict | None = None):
        """Restores the checkpoint ``step`` (the latest by default).

        Parameters
        ----------
        like
            A pytree of the structure, shapes and dtypes to restore into
            (arrays or `jax.ShapeDtypeStruct`).
        step
            Which checkpoint; the latest if None.
        expected
            Metadata entries that must equal the saved ones.

        Returns
        -------
        tree, metadata

        Raises
        ------
        CheckpointError
            If there is no such checkpoint, an ``expected`` entry differs
            from the saved one (both values are named), or the files cannot
            be read or do not match their checksums.
        """
        step = self._resolve(step)
        path = self._path(step)
        metadata = self._read_metadata(step)
        for name, value in (expected or {}).items():
            saved = metadata.get(name)
            if _jsonable(saved) != _jsonable(value):
                raise CheckpointError(
                    f"checkpoint {path} was written with {name}={saved!r}, but "
                    f"{name}={value!r} was asked for; use a new directory or "
                    "settings that match the checkpoint"
                )

        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)),
            )
        except Exception as error:
            raise CheckpointError(
                f"checkpoint {path} is damaged or incomplete and cannot be "
                f"restored ({type(error).__name__}: {error}); delete it to fall "
                "back to an earlier one"
            ) from error
        # Orbax may hand NamedTuples back as plain tuples; the leaves come
        # back in order, so the caller's structure is put back around them.
        tree = jax.tree.unflatten(
            jax.tree.structure(like), jax.tree.leaves(restored.state)
        )
        saved_sums = metadata.pop(_CHECKSUM_KEY, None)
        if saved_sums is not None and tree_checksums(tree) != saved_sums:
            raise CheckpointError(
                f"checkpoint {path} does not match the checksums stored with it; "
                "it is damaged: delete it to fall back to an earlier one"
            )
        return tree, metadata

    def close(self) -> None:
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _resolve(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if step is None:
            return steps[-1]
        if int(step) not in steps:
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; there are {steps}"
            )
        return int(step)

    def _read_metadata(self, step: int) -> dict:
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())
            )
        except Exception as error:
            raise CheckpointError(
                f"cannot read the metadata of checkpoint {self._path(step)}: {error}"
            ) from error
        return dict(restored.metadata)

    def _path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))


def _jsonable(value):
    # Metadata comes back from JSON, where tuples are lists.
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
