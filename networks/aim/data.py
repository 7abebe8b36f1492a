"""AIM's training data (core/data.py, core/util.py, core/process_data.py; JizhiziLi/AIM, MIT).

Transfer stage (DUTS's layout: images and their salient-object masks): the trimap made from the
mask by an elliptical dilation / erosion of 10 px, the image, mask and trimap flipped left-right
(p = 0.5) and resized to 320 x 320 (bilinear), whole.

Matting stage (AIM's layout: fg, mask, usr, over BG-20k backgrounds; or photos with alphas, their
foregrounds estimated once, their usr made as process_data.py makes it: the 30 px dilation /
erosion trimap of the alpha): the background resized to the foreground by scikit-image 0.14's
resize and box-blurred (20 .. 60 px, p = 0.5); the composite truncated to 8 bits; Gaussian noise
of sigma 10 added to the composite, fg and bg alike (p = 0.5; as published, the sums are cast to
uint8 with numpy's wrap-around for what leaves 0..255); a square of 640, 960 or 1280 px (320 px
when the draw does not fit) cropped at a top-left pixel drawn on the usr's transition (p = 0.5)
or anywhere, flipped left-right (p = 0.5), every layer resized to 320 x 320 (bilinear).

data.crop_size is the 320 (the size the network trains at); data.augmentation = false leaves out
the flip, the blur and the noise. Where a crop of 320 px would not fit the published code fails;
here the crop is the image's shorter side."""
from dataclasses import dataclass
import os
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from dataloader.datasets import KeyedDataset, SampleSource
from dataloader.file_lists import DataListError, photos_with_alphas
from networks.aim.skimage_resize import resize_like_skimage
from utils.io.images import ImageReadError, index_by_stem, list_images, read_uint8, stem

DUTS_KERNEL, USR_KERNEL = 10, 30
CROP_SIDES, FALLBACK_SIDE = (640, 960, 1280), 320
FLIP_PROB, BLUR_PROB, NOISE_PROB, TRANSITION_CROP_PROB = 0.5, 0.5, 0.5, 0.5
BLUR_SIDES, NOISE_SIGMA = (20, 30, 40, 50, 60), 10
TRANSITION = 128


def dilated_trimap(alpha: np.ndarray, kernel_size: int) -> np.ndarray:
    """gen_trimap_with_dilate: 255 where the alpha's 255 survives an erosion by an ellipse of
    kernel_size, 128 where its non-zero pixels dilated by it reach and that erosion does not, else 0."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    dilated = cv2.dilate((alpha != 0).astype(np.uint8), kernel)
    eroded = cv2.erode((alpha == 255).astype(np.uint8), kernel)
    trimap = np.where(dilated > 0, TRANSITION, 0).astype(np.uint8)
    trimap[eroded > 0] = 255
    return trimap


def wrapped_uint8(values: np.ndarray) -> np.ndarray:
    """np.uint8(values) as numpy computes it on x86 for floats out of range: truncated toward 0,
    then taken modulo 256 (without numpy's warning for the out-of-range cast)."""
    return np.mod(np.trunc(values), 256).astype(np.uint8)


def flip_and_resize(layers: Dict[str, np.ndarray], flip: bool, size: int) -> Dict[str, np.ndarray]:
    return {name: cv2.resize(cv2.flip(layer, 1) if flip else layer, (size, size), interpolation=cv2.INTER_LINEAR)
            for name, layer in layers.items()}


class SalientObjects(KeyedDataset):
    """The transfer stage's set: images and masks paired by stem (data.train_merged,
    data.train_alpha), an epoch one pass over them."""

    def __init__(self, images: List[str], masks: List[str], to_tensors, size: int, augmentation: bool, seed: int,
                 rank: int):
        super().__init__(to_tensors, seed, rank)
        self.images, self.masks, self.size, self.augmentation = images, masks, size, augmentation

    def __len__(self) -> int:
        return len(self.images)

    def item_name(self, index: int) -> str:
        return os.path.basename(self.images[index])

    def summary(self) -> str:
        return f"{len(self.images)} images with salient-object masks"

    def make_sample(self, epoch: int, index: int) -> Dict[str, np.ndarray]:
        rng = self.rng_for(epoch, index)
        image, mask = read_uint8(self.images[index]), read_uint8(self.masks[index], grey=True)
        if image.shape[:2] != mask.shape:
            raise ImageReadError(f"{self.images[index]} is {image.shape[1]}x{image.shape[0]} but {self.masks[index]} "
                                 f"is {mask.shape[1]}x{mask.shape[0]}")
        flip = self.augmentation and rng.random() < FLIP_PROB
        layers = flip_and_resize({"image": image, "mask": mask, "trimap": dilated_trimap(mask, DUTS_KERNEL)}, flip,
                                 self.size)
        return {"image": layers["image"], "alpha": layers["mask"].astype(np.float32) / 255,
                "trimap": layers["trimap"].astype(np.float32)}


def salient_objects(images_dir: str, masks_dir: str, to_tensors, size: int, augmentation: bool, seed: int,
                    rank: int) -> SalientObjects:
    images, masks, stems = photos_with_alphas(images_dir, masks_dir)
    return SalientObjects([os.path.join(images_dir, images[s]) for s in stems],
                          [os.path.join(masks_dir, masks[s]) for s in stems], to_tensors, size, augmentation, seed,
                          rank)


def usr_files(folder: str, alphas: List[str], key: str = "data.train_usr") -> Tuple[str, ...]:
    """The usr map of each alpha, by stem, from `folder`; DataListError naming those missing."""
    if not os.path.isdir(folder):
        raise DataListError(f"{key} = {folder!r}: no such folder")
    found = index_by_stem(list_images(folder))
    missing = [alpha for alpha in alphas if stem(os.path.basename(alpha)) not in found]
    if missing:
        raise DataListError(f"{len(missing)} of {len(alphas)} alphas have no usr map in {key} = {folder!r} "
                            f"(e.g. {', '.join(missing[:3])}); unset {key} to make them from the alphas")
    return tuple(os.path.join(folder, found[stem(os.path.basename(alpha))][0]) for alpha in alphas)


def crop_window(usr: np.ndarray, rng: np.random.Generator) -> Tuple[int, int, int]:
    """(top, left, side): DatasetTransform's square crop."""
    height, width = usr.shape
    side = int(rng.choice(CROP_SIDES))
    side = side if side < min(height, width) else min(FALLBACK_SIDE, height, width)
    region = usr[:max(height - side, 1), :max(width - side, 1)]
    candidates = np.argwhere(region == TRANSITION) if rng.random() < TRANSITION_CROP_PROB else np.empty((0, 2))
    if len(candidates) == 0:
        candidates = np.argwhere(np.ones_like(region, dtype=bool))
    top, left = candidates[int(rng.integers(len(candidates)))]
    return int(top), int(left), side


@dataclass(frozen=True)
class MattingSamples:
    """The matting stage's SampleFunction: `usr` holds each foreground's usr map file, or is None
    for usr maps made from the alphas (process_data.py's, for objects of the salient kind)."""
    usr: Optional[Tuple[str, ...]]

    def __call__(self, source: SampleSource) -> Dict[str, np.ndarray]:
        rng, fg, mask = source.rng, source.fg, source.alpha
        usr = (read_uint8(self.usr[source.index], grey=True) if self.usr is not None
               else dilated_trimap(mask, USR_KERNEL))
        if usr.shape != mask.shape:
            raise ImageReadError(f"{self.usr[source.index]} is {usr.shape[1]}x{usr.shape[0]}, its alpha "
                                 f"{mask.shape[1]}x{mask.shape[0]}")
        height, width = mask.shape
        bg = resize_like_skimage(source.bg, height, width, "skimage-0.14") * 255.0
        if source.augmentation and rng.random() < BLUR_PROB:
            side = int(rng.choice(BLUR_SIDES))
            bg = cv2.blur(bg, (side, side))
        alpha = (mask / 255.0).astype(np.float32)[:, :, None]
        image = (alpha * fg + (1 - alpha) * bg).astype(np.uint8)
        if source.augmentation and rng.random() < NOISE_PROB:
            noise = rng.normal(0, NOISE_SIGMA, image.shape)
            image, fg, bg = (wrapped_uint8(layer + noise) for layer in (image, fg, bg))
        top, left, side = crop_window(usr, rng)
        flip = source.augmentation and rng.random() < FLIP_PROB
        window = (slice(top, top + side), slice(left, left + side))
        layers = flip_and_resize({"image": image[window], "mask": mask[window], "usr": usr[window], "fg": fg[window],
                                  "bg": bg[window]}, flip, source.crop_size)
        return {"image": layers["image"], "fg": layers["fg"], "bg": layers["bg"],
                "alpha": layers["mask"].astype(np.float32) / 255, "trimap": layers["usr"].astype(np.float32)}
