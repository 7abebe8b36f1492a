"""A folder command, or the test phase, over several processes: `torchrun --nproc_per_node=N`
(and --nnodes) starts the ranks, each takes its share of the images (utils.distributed.shard_of)
and writes its files atomically as a plain run does, and rank 0 prints the one summary, from
what every rank reports at the end (all_gather_objects). A plain `python` run is rank 0 of 1 and
goes through the same code.

A rank that dies (killed, out of memory) loses only the image it was on. torchrun then stops the
others with SIGTERM, and rank 0's stop line counts the images from the folder and names those
whose files are not all there; where the others go on (another launcher), their gather fails,
at once or after the process group's timeout, and rank 0's summary names them the same way, with
exit code 1. `--resume` then finishes them.
"""
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import torch

from utils import distributed as du
from utils.io.batch import Tally, all_there, process_pairs, report_failures, split_complete

Row = TypeVar("Row", bound=tuple)
Pair = Tuple[str, Optional[str]]


def cpu_count() -> int:
    """The cores this process may run on (its affinity, as a container or `taskset` limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def join_ranks(device: str, timeout_minutes: float = 30) -> du.DistInfo:
    """This process's rank, rank 0 of 1 outside a launcher. Under torchrun the process group
    starts: NCCL where `device` (auto, cpu, cuda) means the GPU, else gloo, each rank on the CPU
    then using its share of the cores (share_cores). A dead peer fails a collective after
    `timeout_minutes` at the latest."""
    info = du.init_distributed(timeout_minutes=timeout_minutes, cuda=device != "cpu" and torch.cuda.is_available())
    share_cores(info)
    return info


def share_cores(info: du.DistInfo) -> None:
    """Under several ranks on the CPU, this rank's share of the machine's cores as its threads
    (torchrun sets one thread each, which leaves the rest idle)."""
    if info.distributed and info.device.type == "cpu":
        torch.set_num_threads(max(1, cpu_count() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def gathered_rows(rows: List[Row], problems: List[str]) -> Tuple[List[Row], List[List[str]]]:
    """(every rank's rows sorted by their first field, each rank's `problems`), on every rank:
    rows that start with their item's place in the one-process order come back in that order,
    so that sums over them are those of one process to the bit."""
    reports = du.all_gather_objects((rows, problems))
    return sorted((row for rank_rows, _ in reports for row in rank_rows), key=lambda row: row[0]), \
        [rank_problems for _, rank_problems in reports]


class ShardedFolder:
    """The images of a folder command spread over the ranks: `pairs` (image path, its trimap or
    mask path or None), listed alike by every rank, `folder` where their files go, `required(image
    path)` the names of the files a finished image has there."""

    def __init__(self, info: du.DistInfo, pairs: Sequence[Pair], folder: str,
                 required: Callable[[str], List[str]]):
        self.info, self.folder, self.required = info, folder, required
        self.todo: List[Pair] = list(pairs)
        self.complete = 0  # finished before this run (--resume)
        self.written: List[str] = []  # image paths, this rank's
        self.failed: List[str] = []  # problems, this rank's

    @property
    def main(self) -> bool:
        return self.info.rank == 0

    def finished(self, image_path: str) -> bool:
        return all_there(self.folder, self.required(image_path))

    def skip_finished(self) -> None:
        """--resume: leaves out the images whose files are all there, counted in `complete`. Rank
        0 looks (removing what cut-short writes left) before any rank writes; every rank takes that."""
        verdict = split_complete(self.todo, self.folder, self.required) if self.main else None
        self.todo, self.complete = du.all_gather_objects(verdict)[0]

    def run(self, process: Callable[[str, Optional[str]], None], desc: str, unnamed_errors: Tuple[type, ...],
            tally: Tally) -> None:
        """This rank's share through process_pairs (the progress bar on rank 0 only), counted in
        `tally`; under several ranks the tally's stop line counts all of them from the folder."""
        if self.info.distributed:
            tally.look_up = self.looked_up

        def recorded(image_path: str, other_path: Optional[str]) -> None:
            process(image_path, other_path)
            self.written.append(image_path)

        process_pairs(du.shard_of(self.todo, self.info.rank, self.info.world_size), recorded, desc, self.failed,
                      unnamed_errors, tally, bar=self.main)

    def looked_up(self) -> Tuple[int, List[str]]:
        """(how many images are finished, those of this run that are not), from the folder:
        whichever rank had them."""
        left = [image for image, _ in self.todo if not self.finished(image)]
        return self.complete + len(self.todo) - len(left), left

    def summary(self, total: int, skipped: List[str]) -> int:
        """Rank 0 prints how many of the `total` images were written (and how many before this
        run), then every image skipped (`skipped`: the problems found before the run), failed,
        or not reported by its rank; the exit code on every rank: 1 when any, else 0."""
        try:
            reports: Dict[int, Tuple[List[str], List[str]]] = dict(enumerate(
                du.all_gather_objects((self.written, self.failed))))
        except RuntimeError:  # a rank died: its images are named from the folder below
            reports = {self.info.rank: (self.written, self.failed)}
        written = sum(len(report[0]) for report in reports.values())
        problems = skipped + [problem for rank in sorted(reports) for problem in reports[rank][1]]
        lost = [rank for rank in range(self.info.world_size) if rank not in reports]
        for rank in lost:
            share = [image for image, _ in du.shard_of(self.todo, rank, self.info.world_size)]
            missing = [image for image in share if not self.finished(image)]
            problems += [f"{image}: not written (rank {rank} stopped before it reported)" for image in missing]
            written += len(share) - len(missing)
        done = self.complete + written
        if self.main:
            print(f"{done} of {total} images written to {self.folder}"
                  + (f" ({self.complete} before this run)" if self.complete else "")
                  + (f" by {self.info.world_size} processes" if self.info.distributed else ""))
            return report_failures(total - done, total, problems)
        return 1 if problems else 0
