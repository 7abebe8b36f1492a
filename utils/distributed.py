"""Process-group set-up and the few collective helpers the trainer uses (DETR's util/misc.py).

Launch-agnostic: a plain `python main.py`, `python -m torch.distributed.launch` (which passes
--local_rank / --local-rank) and `torchrun` (LOCAL_RANK, RANK, WORLD_SIZE) all work. NCCL on
CUDA, gloo on the CPU.
"""
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist

Item = TypeVar("Item")


@dataclass
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(local_rank_arg: Optional[int] = None, timeout_minutes: float = 30,
                     cuda: Optional[bool] = None) -> DistInfo:
    """This process's rank, its process group started under a launcher; `cuda` False keeps the
    ranks on the CPU (gloo) where a GPU is there too (default: CUDA when available)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", local_rank_arg if local_rank_arg is not None else 0))
    rank = int(os.environ.get("RANK", "0"))
    cuda = torch.cuda.is_available() if cuda is None else cuda
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1:
        # A dead peer makes the others' next collective fail within the timeout instead of hanging.
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://",
                                timeout=timedelta(minutes=timeout_minutes))
    return DistInfo(rank, local_rank, world_size, device)


def is_dist_avail_and_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def save_on_master(save, *args, **kwargs) -> None:
    if is_main_process():
        save(*args, **kwargs)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place; a no-op in a single process."""
    if is_dist_avail_and_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if is_dist_avail_and_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def main_process_decides(decision: bool, device: torch.device) -> bool:
    """Rank 0's `decision` on every rank (each passes its own; only rank 0's counts), so that a
    check of files only rank 0 may see gives one verdict; a no-op in a single process."""
    if not is_dist_avail_and_initialized():
        return decision
    flag = torch.tensor([float(decision)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def shard_of(items: Sequence[Item], rank: int, world_size: int) -> List[Item]:
    """This rank's share of `items`: every world_size-th one from position `rank`, so that ranks get
    equal counts (within one) and sizes mixed through a sorted folder spread over all of them."""
    return list(items[rank::world_size])


def all_gather_objects(value: Any) -> List[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank; [value] in a single process."""
    if not is_dist_avail_and_initialized():
        return [value]
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    if is_dist_avail_and_initialized():
        dist.barrier()


def cleanup() -> None:
    if is_dist_avail_and_initialized():
        dist.destroy_process_group()
