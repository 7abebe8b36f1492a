"""Trimap and image conversions on numpy arrays, for the training datasets, demo.py and the page;
a family's inference and evaluation go through its recipe (utils/recipe.py), which these use."""
from typing import Optional

import numpy as np
import torch

from utils import recipe
from utils.recipe import imagenet_normalised, threshold_classes, threshold_labels, threshold_one_hot

# For drawing normalised images (tensorboard, sample grids): x * std + mean.
IMAGENET_MEAN = torch.tensor(recipe.IMAGENET_MEAN).view(3, 1, 1)
IMAGENET_STD = torch.tensor(recipe.IMAGENET_STD).view(3, 1, 1)
LABEL_TRIMAP_GREYS = np.array([0, 128, 255], dtype=np.uint8)


def trimap_to_classes(trimap: np.ndarray) -> np.ndarray:
    """Grey trimap (0..255 scale) -> int64 classes: < 85 background, >= 170 foreground, else unknown."""
    return threshold_classes(torch.from_numpy(np.ascontiguousarray(trimap))).numpy()


def label_trimap_to_grey(trimap: np.ndarray) -> Optional[np.ndarray]:
    """A trimap saved as labels 0/1/2 (8-bit, max 1 or 2) as the grey 0/128/255 every recipe
    expects, or None for any other trimap: read as grey, those labels would all be background."""
    if trimap.dtype != np.uint8 or not 1 <= trimap.max() <= 2:
        return None
    return LABEL_TRIMAP_GREYS[trimap]


def image_to_tensor(image_bgr: np.ndarray) -> torch.Tensor:
    """H x W x 3 BGR on the 0..255 scale -> 3 x H x W RGB, ImageNet-normalised as GCA-Matting does."""
    return imagenet_normalised(torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1])))


def trimap_to_tensor(trimap: np.ndarray, trimap_channel: int) -> torch.Tensor:
    """Grey H x W -> GCA-Matting's network trimap: one-hot 3 x H x W, or 1 x H x W holding 0/1/2."""
    encode = threshold_one_hot if trimap_channel == 3 else threshold_labels
    return encode(torch.from_numpy(np.ascontiguousarray(trimap)))
