"""DataLoaders for training and testing, and a CUDA prefetcher."""
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import sys
from typing import Dict, Iterator

import cv2
import torch
from torch.utils.data import DataLoader, DistributedSampler

from dataloader.datasets import EpochSampler, EvalDataset, TrainDataset
from utils.distributed import shard_of
from utils.signals import ignore_stop_signals, stop_signals_blocked


def _worker_init(_: int) -> None:
    # Each worker is one of several processes: OpenCV / torch threads would only oversubscribe.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    # Ctrl-C and SIGTERM are for the training process, which saves and stops; a worker that
    # died of them first would make that last step fail.
    ignore_stop_signals()


def worker_context():
    """Workers start from a clean process: a fork of a parent whose OpenCV thread pool is
    running deadlocks in the child's first parallel OpenCV call. On Linux they are forked by a
    forkserver started here with the stop signals blocked, so that every worker is born with
    them blocked (until _worker_init ignores them) and a group signal kills neither the
    forkserver nor a starting worker. Elsewhere (spawn) workers inherit the mask of the
    thread that starts them: start them inside `stop_signals_blocked()`."""
    # Started first: starting it unblocks SIGINT and SIGTERM in the calling thread.
    multiprocessing.resource_tracker.ensure_running()
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    with stop_signals_blocked():
        multiprocessing.forkserver.ensure_running()
    return multiprocessing.get_context("forkserver")


def train_loader(dataset: TrainDataset, batch_size: int, workers: int, seed: int,
                 rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    """Shuffled with DistributedSampler(seed) on every rank (world size 1 included); call
    `loader.sampler.set_position(epoch, start)` before each pass."""
    sampler = EpochSampler(DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                              seed=seed, drop_last=True))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=True, worker_init_fn=_worker_init,
                      # Not persistent: when an epoch's iterator goes, its workers are shut
                      # down through their queues. They ignore SIGTERM (see _worker_init), so
                      # multiprocessing's exit-time terminate() could not end them.
                      persistent_workers=False,
                      multiprocessing_context=worker_context() if workers > 0 else None)


def _as_read(sample: Dict) -> Dict:
    return sample


def eval_loader(dataset: EvalDataset, rank: int = 0, world_size: int = 1) -> DataLoader:
    """The samples one at a time, as the dataset reads them (sizes differ; the recipe pads them);
    under DDP each rank takes its share without padding duplicates."""
    indices = shard_of(range(len(dataset)), rank, world_size)
    return DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=None, shuffle=False, num_workers=0,
                      collate_fn=_as_read)


class Prefetcher:
    """Copies the next batch to the GPU on a side stream while the current one is used; on the
    CPU it passes batches through unchanged."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device

    def _to_device(self, batch):
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def __iter__(self) -> Iterator:
        with stop_signals_blocked():  # the loader's workers start here
            iterator = iter(self.loader)
        if self.device.type != "cuda":
            yield from iterator
            return
        stream = torch.cuda.Stream(self.device)
        pending = None
        for batch in iterator:
            with torch.cuda.stream(stream):
                ready = self._to_device(batch)
            if pending is not None:
                yield pending
            torch.cuda.current_stream(self.device).wait_stream(stream)
            for v in ready.values():
                if torch.is_tensor(v):
                    v.record_stream(torch.cuda.current_stream(self.device))
            pending = ready
        if pending is not None:
            yield pending
