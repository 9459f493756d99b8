"""Running under ``torchrun``: the process group from torchrun's environment (gloo on CPU, NCCL
on CUDA), and ``train-many`` sharded across its ranks."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ..errors import ConfigError, NadaError

log = logging.getLogger(__name__)

# Collectives give up after this long (a rank that died, a node that never joined); torchrun's
# agent also stops the other ranks when one fails. NADA_DIST_TIMEOUT (seconds) overrides it.
DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class DistContext:
    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> int:
    """WORLD_SIZE as torchrun sets it (1 outside torchrun); a malformed value is a clear error."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(1, int(text))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={text!r} is not a number", "run under torchrun, or unset WORLD_SIZE") from None


def init_from_env(device: str = "auto") -> DistContext | None:
    """Join torchrun's process group (None outside torchrun). The backend follows the device:
    NCCL for CUDA (each rank on ``cuda:LOCAL_RANK``), gloo for CPU."""
    world = world_from_env()
    if world == 1:
        return None
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        timeout = float(os.environ.get("NADA_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    return DistContext(rank, world, local, backend)


def rank_device(ctx: DistContext, device: str) -> str:
    """The device a rank uses: its own GPU for ``auto``/``cuda``, as given otherwise."""
    return f"cuda:{ctx.local_rank}" if ctx.backend == "nccl" and device in ("auto", "cuda") else device


def train_many_distributed(ctx: DistContext, cfgs: Sequence, out: str | Path, names=None, resume=False,
                           overwrite=False, quiet=False, chunk=None):
    """:func:`nada.adapt.many.train_many` with domain i on rank ``i % world``: rank 0 checks and
    writes the job folder first, every rank trains its domains into their own run directories,
    rank 0 gathers every outcome and writes the summary. Returns the whole job's result on rank
    0, the rank's own part elsewhere."""
    import torch.distributed as dist

    from . import many

    out = Path(out)
    error = None
    if ctx.is_main:
        try:
            many.check_job_dir(out, resume, overwrite)
            if not resume:
                if not cfgs:
                    raise ConfigError("no targets", "pass --targets a,b,c or --targets-file FILE")
                names = list(names) if names is not None else many.domain_names([c.target for c in cfgs])
                job = [c.replace(out=str(out / n)) for n, c in zip(names, cfgs)]
                many.write_job(out, names, job, overwrite)
        except NadaError as exc:
            error = str(exc)
    gather_errors(ctx, error)  # rank 0's set-up error, raised on every rank
    result = many.train_many(cfgs, out, names=None, resume=True, quiet=quiet or not ctx.is_main,
                             shard=(ctx.rank, ctx.world), chunk=chunk)
    gathered: list = [None] * ctx.world
    mine = [(i, o) for i, o in enumerate(result.outcomes) if i % ctx.world == ctx.rank]
    dist.all_gather_object(gathered, mine)
    if ctx.is_main:
        for part in gathered:
            for i, o in part:
                result.outcomes[i] = o
        many.write_summary(out, result.outcomes)
    dist.barrier()
    return result


# --- data parallel for one domain (``nada train`` under torchrun) ---------------------------

def wrap_data_parallel(ctx: DistContext, synthesis, adapter=None):
    """The trainable synthesis (and the adapter its hooks apply) in DistributedDataParallel:
    gradients are averaged over the ranks, so N ranks at batch B step as one process at N·B.
    Only what learns is registered (the adapter's parameters, else the synthesis weights); the
    layers frozen in a step produce no gradient and DDP leaves theirs unset
    (``find_unused_parameters``), as a single process does."""
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    class Learnt(nn.Module):
        def __init__(self):
            super().__init__()
            self.synthesis = synthesis
            self.adapter = adapter

        def forward(self, *args, **kwargs):
            return self.synthesis(*args, **kwargs)

    module = Learnt()
    learns = list(adapter.parameters()) if adapter is not None else list(synthesis.parameters())
    before = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    for p in learns:
        p.requires_grad_(True)
    ids = [ctx.local_rank] if ctx.backend == "nccl" else None
    ddp = DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False, find_unused_parameters=True)
    for p, flag in zip(module.parameters(), before):
        p.requires_grad_(flag)
    return ddp


def broadcast_object(ctx: DistContext, obj):
    """Rank 0's ``obj`` on every rank (the layer search's choice)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(ctx: DistContext, values: list[float]) -> list[float]:
    """The ranks' average of a few numbers (a step's loss terms, for the metrics log)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return (t / ctx.world).tolist()


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if it is true on one (a Ctrl-C seen by one rank stops all at the same step)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_errors(ctx: DistContext, error: str | None) -> None:
    """Raise the first rank's set-up error on every rank (none waits for a rank that gave up)."""
    import torch.distributed as dist

    errors: list = [None] * ctx.world
    dist.all_gather_object(errors, error)
    first = next((e for e in errors if e), None)
    if first is not None:
        raise ConfigError(first)
