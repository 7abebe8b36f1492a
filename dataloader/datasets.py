"""Training and test datasets."""
import dataclasses
from dataclasses import dataclass
import logging
import os
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from dataloader import transforms as T
from dataloader.decode_cache import DecodeCache
from dataloader.dim_pipeline import dim_sample
from dataloader.fast_pipeline import gca_sample_fast
from dataloader.file_lists import DataListError, EvalList, TrainFolders, TrainList, composited_list
from utils.cutouts.foreground import solve_background
from utils.io.images import ImageReadError, read_grey, read_image, read_uint8

logger = logging.getLogger(__name__)
PIPELINES = ("gca", "dim")
MAX_REPLACEMENTS = 10
SampleKey = Union[int, Tuple[int, int]]
# The own-background draw has a generator of its own, so the published draws stay as they were.
OWN_BACKGROUND_STREAM = 1


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) from the file's header; raises ImageReadError naming the file."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None


def check_sizes(files: TrainList) -> None:
    """Every photo (with photos), fg and alpha of an item have the same size (read from the file
    headers). Unreadable files are logged here and replaced when a sample needs them."""
    layers = ([files.merged] if files.merged else []) + [files.fg, files.alpha]
    mismatched = []
    for paths in zip(*layers):
        try:
            sizes = [image_size(path) for path in paths]
        except ImageReadError as e:
            logger.warning("unreadable training file, its samples will be replaced by the next ones: %s", e)
            continue
        mismatched += [f"{paths[0]} is {sizes[0][0]}x{sizes[0][1]} but {path} is {size[0]}x{size[1]}"
                       for path, size in zip(paths[1:], sizes[1:]) if size != sizes[0]]
    if mismatched:
        what = "photo / foreground / alpha" if files.merged else "foreground / alpha"
        raise DataListError(f"{len(mismatched)} {what} files differ in size from their partner: "
                            + "; ".join(mismatched[:5]))


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


@dataclass(frozen=True)
class SampleSource:
    """What a family's own data pipeline (TrainDataset's `pipeline` given as a function) makes a
    sample from: foreground `index` of `count` (BGR uint8) and its alpha (uint8), the background
    (BGR uint8, or the photo's own float32 one where own_background), the sample's generator, the
    crop size and data.augmentation, and read_foreground(i) -> (fg, alpha) of another foreground
    (for mixing two), which raises ImageReadError as the first read does."""
    fg: np.ndarray
    alpha: np.ndarray
    bg: np.ndarray
    own_background: bool
    index: int
    count: int
    rng: np.random.Generator
    crop_size: int
    augmentation: bool
    read_foreground: Callable[[int], Tuple[np.ndarray, np.ndarray]]


SampleFunction = Callable[[SampleSource], Dict[str, np.ndarray]]


class KeyedDataset(Dataset):
    """A training set whose randomness comes from the key: the sampler passes (epoch, index) and
    the generator is seeded with (seed, epoch, rank, index), so a sample does not depend on which
    worker makes it, workers and ranks never share a stream, and a restart with the same seed
    repeats it. A sample whose file cannot be read is replaced by the next index's.
    `to_tensors` encodes a sample's arrays for the network and its losses (the family's
    TrainingRecipe.train_tensors). Subclasses make the arrays (make_sample) and name the item."""

    def __init__(self, to_tensors: Callable[[Dict[str, np.ndarray]], Dict[str, torch.Tensor]], seed: int, rank: int):
        self.to_tensors, self.seed, self.rank = to_tensors, seed, rank

    def rng_for(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, self.rank, index])

    def make_sample(self, epoch: int, index: int) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def item_name(self, index: int) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        """What the set holds, for the log ("4 photos, 6 backgrounds")."""
        raise NotImplementedError

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
        tensors = self.to_tensors(sample)
        tensors["image_name"] = self.item_name(index)
        tensors["replaced"] = len(errors)
        tensors["bad_files"] = "\n".join(errors)
        return tensors


class TrainDataset(KeyedDataset):
    """Foregrounds composited on the fly over backgrounds: item i uses fg[i % n_fg] and bg[i], so
    an epoch is one pass over the backgrounds. The foregrounds are Adobe's, or those estimated
    from photos (files.merged); with photos, `own_background_prob` is the probability that an item
    uses its photo's own background instead of bg[i]: the sample is then the photo itself.
    `pipeline`: "gca" or "dim" (data.pipeline), or a family's own SampleFunction; `draw` makes the
    random choices of a "gca"-pipeline sample (GCA-Matting's, dataloader.transforms.draw_gca; a
    family's variant of them).
    """

    def __init__(self, files: TrainList, to_tensors: Callable[[Dict[str, np.ndarray]], Dict[str, torch.Tensor]],
                 crop_size: int = 512, augmentation: bool = True, random_interp: bool = False,
                 pipeline: Union[str, SampleFunction] = "gca", seed: int = 0, rank: int = 0,
                 decode_cache: Optional[str] = None, fast: bool = True, own_background_prob: float = 0.0,
                 draw: Callable[..., T.GCADraws] = T.draw_gca):
        if crop_size % 32:
            raise ValueError(f"data.crop_size must be a multiple of 32, got {crop_size}")
        if not callable(pipeline) and pipeline not in PIPELINES:
            raise ValueError(f"data.pipeline must be one of {PIPELINES}, got {pipeline!r}")
        if own_background_prob and not files.merged:
            raise ValueError(f"data.own_background_prob = {own_background_prob} needs photos (data.train_merged): "
                             "an Adobe foreground has no background of its own; set it to 0")
        check_sizes(files)
        super().__init__(to_tensors, seed, rank)
        self.files = files
        self.crop_size, self.augmentation, self.random_interp = crop_size, augmentation, random_interp
        self.pipeline = pipeline
        self.fast = fast
        self.own_background_prob = own_background_prob
        self.draw = draw
        self.cache = DecodeCache(decode_cache)

    def __len__(self) -> int:
        return len(self.files.bg)

    def item_name(self, index: int) -> str:
        return os.path.basename(self.files.fg[index % len(self.files.fg)])

    def summary(self) -> str:
        return f"{len(self.files.fg)} {'photos' if self.files.merged else 'foregrounds'}, {len(self.files.bg)} backgrounds"

    def uses_own_background(self, epoch: int, index: int) -> bool:
        if not self.own_background_prob:
            return False
        rng = np.random.default_rng([self.seed, epoch, self.rank, index, OWN_BACKGROUND_STREAM])
        return bool(rng.random() < self.own_background_prob)

    def _read_fg(self, i: int):
        """fg (BGR) and alpha of item i as uint8; ImageReadError naming the files that differ in size."""
        fg = self.cache.read(self.files.fg[i])
        alpha = self.cache.read(self.files.alpha[i], grey=True)
        if fg.shape[:2] != alpha.shape:
            raise ImageReadError(f"{self.files.fg[i]} is {fg.shape[1]}x{fg.shape[0]} but {self.files.alpha[i]} "
                                 f"is {alpha.shape[1]}x{alpha.shape[0]}")
        return np.asarray(fg), np.asarray(alpha)

    def _own_background(self, i: int, fg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The background of photo i that its estimated fg and alpha leave (float32 BGR)."""
        photo = self.cache.read(self.files.merged[i])
        if photo.shape[:2] != alpha.shape:
            raise ImageReadError(f"{self.files.merged[i]} is {photo.shape[1]}x{photo.shape[0]} but "
                                 f"{self.files.alpha[i]} is {alpha.shape[1]}x{alpha.shape[0]}")
        return solve_background(photo, fg, alpha)

    def make_sample(self, epoch: int, index: int) -> Dict[str, np.ndarray]:
        """The numpy sample (before tensors) for one key; raises ImageReadError on a bad file."""
        rng = self.rng_for(epoch, index)
        n_fg = len(self.files.fg)
        fg_index = index % n_fg
        own = self.uses_own_background(epoch, index)
        fg, alpha = self._read_fg(fg_index)
        bg = self._own_background(fg_index, fg, alpha) if own else read_uint8(self.files.bg[index])
        if callable(self.pipeline):
            return self.pipeline(SampleSource(fg, alpha, bg, own, fg_index, n_fg, rng, self.crop_size,
                                              self.augmentation, self._read_fg))
        if self.pipeline == "dim":
            return dim_sample(fg, alpha, bg, rng, self.crop_size, own)
        draws = dataclasses.replace(self.draw(rng, n_fg, self.random_interp, self.augmentation), own_background=own)
        fg2 = alpha2 = None
        if draws.mix and not own:
            fg2, alpha2 = self._read_fg((index + draws.mix_offset) % n_fg)
        if self.fast:
            return gca_sample_fast(fg, alpha, bg, draws, self.crop_size, self.augmentation, fg2, alpha2)
        alpha2 = None if alpha2 is None else alpha2.astype(np.float32) / 255
        return T.gca_sample_reference(fg, alpha.astype(np.float32) / 255, bg, draws, self.crop_size,
                                      self.augmentation, fg2, alpha2)


@dataclass(frozen=True)
class DataSettings:
    """The config's data pipeline settings (data.*) and the process's seed and rank, as plain values."""
    crop_size: int
    augmentation: bool
    random_interp: bool
    pipeline: str
    decode_cache: str
    own_background_prob: float
    seed: int
    rank: int
    folders: TrainFolders


def composited_training_set(settings: DataSettings,
                            to_tensors: Callable[[Dict[str, np.ndarray]], Dict[str, torch.Tensor]],
                            pipeline: Optional[SampleFunction] = None,
                            draw: Callable[..., T.GCADraws] = T.draw_gca) -> TrainDataset:
    """TrainDataset over the config's foregrounds (or photos) and backgrounds with the settings
    given: the data pipeline of a family that trains on foregrounds composited over backgrounds (a
    TrainingRecipe's dataset). pipeline: the family's own sample function, else data.pipeline's;
    draw: the random choices of a "gca"-pipeline sample (TrainDataset)."""
    return TrainDataset(composited_list(settings.folders), to_tensors, settings.crop_size, settings.augmentation,
                        settings.random_interp, pipeline or settings.pipeline, settings.seed, settings.rank,
                        settings.decode_cache, own_background_prob=settings.own_background_prob, draw=draw)


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
