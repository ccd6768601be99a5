"""Runs beyond one process: ``torch.distributed`` as launched by ``torchrun``.

``torchrun`` (or ``srun torchrun`` under Slurm) starts one process per rank and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; without it every
variable is absent and :func:`world` is a one-process :class:`World` with no store, so the
stages run exactly as before. With it, the first call joins the process group (gloo on the CPU;
gloo for control messages and NCCL for CUDA tensors when a GPU is present) and opens a
key-value store shared by the ranks (the ``torch.distributed.Store`` of the rendezvous), under a
prefix that rank 0 draws afresh for every (re)start of the group, so counters of a group that
torchrun restarted after a failure never mix with those of the group before.

What the ranks share through it:

* work claimed dynamically: :meth:`World.claim` is ``store.add(key, 1)``, one atomic counter
  per queue, so a rank that met an empty (nodata) unit takes the next one at once;
* failures: :meth:`World.fail` stores one line that the other ranks see at their next claim;
* small results: :meth:`World.put` / :meth:`World.get` (JSON), and the object collectives of
  ``torch.distributed`` (``all_gather_object``) at the end.

The rule for files: a rank never writes a file another rank writes; rank 0 alone writes
bundles, logs and summaries (``World.is_main``), and predict-map's part files are one per unit.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from hsicls.errors import HsiclsError

__all__ = ["World", "world", "RankFailed"]

_STATE: dict = {}


class RankFailed(HsiclsError):
    """Another rank failed and said why (the line is printed once, by the rank that failed)."""

    reported = True


@dataclass
class World:
    """The processes of one run: ``rank`` of ``size``; ``store`` is ``None`` in one process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    store: object | None = field(default=None, repr=False)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ store helpers
    def claim(self, queue: str) -> int:
        """The next unclaimed index of ``queue`` (0, 1, 2, ... across all ranks)."""
        return int(self.store.add(f"claim/{queue}", 1)) - 1

    def count(self, key: str) -> int:
        """Add one to ``key`` and return the new total (all ranks together)."""
        return int(self.store.add(f"count/{key}", 1))

    def put(self, key: str, value) -> None:
        self.store.set(f"value/{key}", json.dumps(value))

    def get(self, key: str, default=None):
        k = f"value/{key}"
        if not self.store.check([k]):
            return default
        return json.loads(self.store.get(k).decode())

    def fail(self, message: str, key: str = "run") -> bool:
        """Record that ``key`` (the whole run by default) failed; True for the first rank to say so
        (an atomic compare-and-set: only its message is kept, and only it prints)."""
        if self.store is None:
            return True
        mine = f"rank {self.rank}: {message}"
        return self.store.compare_set(f"failed/{key}", "", mine).decode() == mine

    def failed(self, key: str = "run") -> str | None:
        k = f"failed/{key}"
        if self.store is None or not self.store.check([k]):
            return None
        return self.store.get(k).decode()

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj) -> list:
        """``obj`` of every rank, in rank order (one process: ``[obj]``)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def device(self, device):
        """The rank's CUDA device when ``device`` is CUDA (ranks share GPUs round-robin by local rank)."""
        import torch

        if device.type == "cuda" and device.index is None and self.distributed:
            return torch.device("cuda", self.local_rank % max(1, torch.cuda.device_count()))
        return device


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise HsiclsError(f"environment variable {name}={os.environ[name]!r} is not an integer") from None


def launched() -> bool:
    """Started by torchrun (or another launcher) with more than one rank."""
    return _env_int("WORLD_SIZE", 1) > 1


def world() -> World:
    """This process's :class:`World`, joining the process group on the first call under torchrun."""
    if "world" in _STATE:
        return _STATE["world"]
    if not launched():
        _STATE["world"] = World()
        return _STATE["world"]
    _STATE["world"] = _join()
    return _STATE["world"]


def _join() -> World:
    import torch
    import torch.distributed as dist

    rank, size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local = _env_int("LOCAL_RANK", 0)
    timeout = timedelta(seconds=_env_int("HSICLS_DIST_TIMEOUT", 3600))
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local % torch.cuda.device_count())
    try:
        store, rank, size = next(dist.rendezvous("env://", rank, size, timeout=timeout))
        # torchrun's agent keeps one store across restarts of the group and adds no prefix of its own
        # (pytorch issue 135712): the restart count keeps a restarted group off the old group's keys
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        pg_store = dist.PrefixStore(f"pg/{attempt}/", store)
        dist.init_process_group(backend, store=pg_store, rank=rank, world_size=size, timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        raise HsiclsError(f"rank {rank}: cannot join the other {size - 1} processes ({str(exc).splitlines()[0]})") from None
    box = [uuid.uuid4().hex if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)  # a fresh key space for this (re)start of the group
    return World(rank, size, local, dist.PrefixStore(f"hsicls/{box[0]}/", store))


def first_to_fail(message: str) -> str | None:
    """The error line to print for ``message``: as it is in one process; under torchrun prefixed with
    the rank, and ``None`` (print nothing) when another rank of the group failed first."""
    w = _STATE.get("world") or _STATE.get("left")
    if w is None or not w.distributed:
        return message
    prefix = f"rank {w.rank}: "
    message = message.removeprefix(prefix)
    try:
        return prefix + message if w.fail(message) else None
    except Exception:  # the store is gone: say it anyway
        return prefix + message


def leave(synchronise: bool = False) -> None:
    """Leave the process group (end of a command). ``synchronise``: wait for every rank first (the ranks that
    finish early, such as the non-writing ones of a DDP run, must not tear their connections down while rank 0
    still uses the group: gloo then aborts the process, "terminate called without an active exception")."""
    w = _STATE.pop("world", None)
    if w is not None and w.distributed:
        _STATE["left"] = w  # its store still tells which rank failed first (the CLI's error line)
        import torch.distributed as dist

        if dist.is_initialized():
            if synchronise:
                dist.barrier()
            dist.destroy_process_group()


@contextmanager
def membership() -> Iterator[None]:
    """A command's time in the process group: on success every rank leaves together (:func:`leave` with
    ``synchronise``); on a failure this rank leaves at once (its peers may be blocked in a collective: torchrun
    stops them when this rank exits non-zero)."""
    try:
        yield
    except BaseException:
        leave()
        raise
    leave(synchronise=True)
