"""Data parallelism: a 1-D mesh over a ``"data"`` axis, batches split over it, parameters
and optimizer state replicated (XLA's partitioner all-reduces the gradients)."""

from __future__ import annotations

import jax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["data_parallel_mesh", "shard_batch", "replicate", "constrain_batch"]


def data_parallel_mesh(devices=None, batch=None) -> Mesh:
    """A 1-D ``Mesh`` over a ``"data"`` axis: ``devices`` an int (the first N local devices),
    a list of devices, or None for every device (of every process, in a multi-host run) —
    in one process given a ``batch`` size, as many of the first devices as it splits over
    evenly (a batch of 1 trains on one device, 32 on 2 of 3)."""
    if devices is None:
        devices = jax.devices()
        if batch is not None and jax.process_count() == 1:
            devices = devices[:max(n for n in range(1, len(devices) + 1) if batch % n == 0)]
    elif isinstance(devices, int) and not isinstance(devices, bool):
        available = jax.local_devices()
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices must be 1 (the only local device), got {devices}" if len(available) == 1
                else f"devices must be between 1 and {len(available)} (the local devices), got "
                     f"{devices}")
        devices = available[:devices]
    return Mesh(list(devices), ("data",))


def check_divides(size, mesh: Mesh, what="the batch"):
    """The one check that a batch splits evenly over the mesh's devices."""
    if size % mesh.size:
        raise ValueError(f"{what} of {size} sequences does not split evenly over "
                         f"{mesh.size} devices; use a batch size divisible by {mesh.size}, or "
                         "fewer devices (--devices, devices=)")


def shard_batch(batch, mesh: Mesh):
    """Places a batch with its leading (batch) axis split over the mesh's data axis."""
    check_divides(jax.tree.leaves(batch)[0].shape[0], mesh)
    return jax.device_put(batch, NamedSharding(mesh, P("data")))


def constrain_batch(batch, mesh: Mesh):
    """Inside a jitted function: the batch's leading axis split over the data axis."""
    return lax.with_sharding_constraint(batch, NamedSharding(mesh, P("data")))


def replicate(tree, mesh: Mesh):
    """Places ``tree`` (parameters, optimizer state) whole on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))
