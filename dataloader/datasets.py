"""Training and test datasets."""
import logging
import os
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from dataloader import transforms as T
from dataloader.decode_cache import DecodeCache
from dataloader.dim_pipeline import dim_sample
from dataloader.fast_pipeline import gca_sample_fast
from dataloader.file_lists import DataListError, EvalList, TrainList
from utils.image_io import ImageReadError, read_grey, read_image, read_uint8
from utils.preprocess import image_to_tensor, trimap_to_tensor

logger = logging.getLogger(__name__)
PIPELINES = ("gca", "dim")
MAX_REPLACEMENTS = 10
SampleKey = Union[int, Tuple[int, int]]


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) from the file's header; raises ImageReadError naming the file."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None


def check_sizes(files: TrainList) -> None:
    """Every fg and its alpha have the same size (read from the file headers). Unreadable files
    are logged here and replaced when a sample needs them."""
    mismatched = []
    for fg, alpha in zip(files.fg, files.alpha):
        try:
            a, b = image_size(fg), image_size(alpha)
        except ImageReadError as e:
            logger.warning("unreadable training file, its samples will be replaced by the next ones: %s", e)
            continue
        if a != b:
            mismatched.append(f"{fg} is {a[0]}x{a[1]} but {alpha} is {b[0]}x{b[1]}")
    if mismatched:
        raise DataListError(f"{len(mismatched)} foreground / alpha pairs differ in size: " + "; ".join(mismatched[:5]))


def size_mismatch(merged: str, alpha: str, trimap: str, sizes: List[Tuple[int, int]]) -> str:
    """The problem line for a test image whose image, alpha and trimap, (width, height) each in
    that order, differ in size."""
    (image_w, image_h), (alpha_w, alpha_h), (trimap_w, trimap_h) = sizes
    return (f"{merged}: image {image_w}x{image_h}, alpha {alpha} {alpha_w}x{alpha_h} and trimap {trimap} "
            f"{trimap_w}x{trimap_h} differ in size")


def usable_eval_files(files: EvalList) -> Tuple[EvalList, List[str]]:
    """The test images whose image, alpha and trimap headers read and agree in size, and a
    problem line for each of the others."""
    usable, problems = EvalList([], [], []), []
    for merged, alpha, trimap in zip(files.merged, files.alpha, files.trimap):
        try:
            sizes = [image_size(p) for p in (merged, alpha, trimap)]
        except ImageReadError as e:
            problems.append(str(e))
            continue
        if len(set(sizes)) > 1:
            problems.append(size_mismatch(merged, alpha, trimap, sizes))
            continue
        usable.merged.append(merged)
        usable.alpha.append(alpha)
        usable.trimap.append(trimap)
    return usable, problems


def train_sample_to_tensors(sample: Dict[str, np.ndarray], trimap_channel: int) -> Dict[str, torch.Tensor]:
    return {
        "image": image_to_tensor(sample["image"]),
        "fg": image_to_tensor(sample["fg"]),
        "bg": image_to_tensor(sample["bg"]),
        "alpha": torch.from_numpy(np.ascontiguousarray(sample["alpha"], dtype=np.float32))[None],
        "trimap": trimap_to_tensor(sample["trimap"], trimap_channel),
    }


class TrainDataset(Dataset):
    """Adobe foregrounds composited on the fly over backgrounds: item i uses fg[i % n_fg] and
    bg[i], so an epoch is one pass over the backgrounds.

    Randomness comes from the key: the sampler passes (epoch, index) and the generator is
    seeded with (seed, epoch, rank, index), so a sample does not depend on which worker makes
    it, workers and ranks never share a stream, and a restart with the same seed repeats it.
    """

    def __init__(self, files: TrainList, crop_size: int = 512, augmentation: bool = True,
                 random_interp: bool = False, pipeline: str = "gca", trimap_channel: int = 3,
                 seed: int = 0, rank: int = 0, decode_cache: Optional[str] = None, fast: bool = True):
        if crop_size % 32:
            raise ValueError(f"data.crop_size must be a multiple of 32, got {crop_size}")
        if pipeline not in PIPELINES:
            raise ValueError(f"data.pipeline must be one of {PIPELINES}, got {pipeline!r}")
        check_sizes(files)
        self.files = files
        self.crop_size, self.augmentation, self.random_interp = crop_size, augmentation, random_interp
        self.pipeline, self.trimap_channel = pipeline, trimap_channel
        self.seed, self.rank, self.fast = seed, rank, fast
        self.cache = DecodeCache(decode_cache)

    def __len__(self) -> int:
        return len(self.files.bg)

    def rng_for(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, self.rank, index])

    def _read_fg(self, i: int, as_float: bool):
        fg = self.cache.read(self.files.fg[i])
        alpha = self.cache.read(self.files.alpha[i], grey=True)
        if fg.shape[:2] != alpha.shape:
            raise ImageReadError(f"{self.files.fg[i]} is {fg.shape[1]}x{fg.shape[0]} but {self.files.alpha[i]} "
                                 f"is {alpha.shape[1]}x{alpha.shape[0]}")
        return fg, (alpha.astype(np.float32) / 255 if as_float else np.asarray(alpha))

    def make_sample(self, epoch: int, index: int) -> Dict[str, np.ndarray]:
        """The numpy sample (before tensors) for one key; raises ImageReadError on a bad file."""
        rng = self.rng_for(epoch, index)
        n_fg = len(self.files.fg)
        fg_index = index % n_fg
        bg = read_uint8(self.files.bg[index])
        if self.pipeline == "dim":
            fg, alpha = self._read_fg(fg_index, as_float=False)
            return dim_sample(np.asarray(fg), alpha, bg, rng, self.crop_size)
        draws = T.draw_gca(rng, n_fg, self.random_interp, self.augmentation)
        fg, alpha = self._read_fg(fg_index, as_float=not self.fast)
        fg2 = alpha2 = None
        if draws.mix:
            fg2, alpha2 = self._read_fg((index + draws.mix_offset) % n_fg, as_float=not self.fast)
        run = gca_sample_fast if self.fast else T.gca_sample_reference
        return run(np.asarray(fg), alpha, bg, draws, self.crop_size, self.augmentation, fg2, alpha2)

    def __getitem__(self, key: SampleKey) -> Dict:
        """The sample's tensors, plus `replaced` (how many unreadable samples were skipped to
        make it) and `bad_files` (their errors, one a line: workers have no log file, the
        training process logs them)."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        errors = []
        while True:
            try:
                sample = self.make_sample(epoch, index)
                break
            except ImageReadError as e:
                errors.append(str(e))
                if len(errors) > MAX_REPLACEMENTS:
                    raise ImageReadError(f"{MAX_REPLACEMENTS} unreadable samples in a row; last: {e}") from None
                index = (index + 1) % len(self)
        tensors = train_sample_to_tensors(sample, self.trimap_channel)
        tensors["image_name"] = os.path.basename(self.files.fg[index % len(self.files.fg)])
        tensors["replaced"] = len(errors)
        tensors["bad_files"] = "\n".join(errors)
        return tensors


class EpochSampler(Sampler):
    """Yields (epoch, index) keys from a DistributedSampler, so the dataset can seed each sample
    by epoch even in persistent workers; `set_position` resumes inside an epoch."""

    def __init__(self, sampler: torch.utils.data.DistributedSampler):
        self.sampler = sampler
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        for index in list(self.sampler)[self.start:]:
            yield self.epoch, index

    def __len__(self) -> int:
        return len(self.sampler) - self.start


class EvalDataset(Dataset):
    """merged + alpha + trimap as read: the BGR image, the grey alpha and the grey trimap (H x W
    [x 3], uint8, or float32 on the 0..255 scale for 16-bit files); a family's recipe pads them."""

    def __init__(self, files: EvalList):
        self.files = files

    def __len__(self) -> int:
        return len(self.files.merged)

    def __getitem__(self, index: int) -> Dict:
        """The sample, or {"image_name", "error"} when a file cannot be read, so that one bad image
        is reported and left out instead of ending the run."""
        try:
            return self._sample(index)
        except ImageReadError as e:
            return {"image_name": os.path.basename(self.files.merged[index]), "error": str(e)}

    def _sample(self, index: int) -> Dict:
        image = read_image(self.files.merged[index])
        alpha = read_grey(self.files.alpha[index])
        trimap = read_grey(self.files.trimap[index])
        h, w = trimap.shape
        if image.shape[:2] != (h, w) or alpha.shape != (h, w):
            sizes = [(array.shape[1], array.shape[0]) for array in (image, alpha, trimap)]
            raise ImageReadError(size_mismatch(self.files.merged[index], self.files.alpha[index],
                                               self.files.trimap[index], sizes))
        return {"image": image, "alpha": alpha, "trimap": trimap,
                "image_name": os.path.basename(self.files.merged[index])}
