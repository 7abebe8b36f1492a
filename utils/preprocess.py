"""Network input and output conversions shared by the demo, the test phase and the datasets."""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2
# Grey trimap thresholds: below BACKGROUND_BELOW background, from FOREGROUND_FROM on foreground.
BACKGROUND_BELOW, FOREGROUND_FROM = 85, 170
INFERENCE_MARGIN = 32
SIZE_MULTIPLE = 32


# Known foreground plus known background below this fraction of the pixels, or no known
# foreground at all, leave the network too little to go on: its alpha comes out near 0 (with
# the quickstart's model, 0.01 to 0.05 on average where the ground truth's is 0.28 to 0.76).
MIN_KNOWN_FRACTION = 0.01


def has_unknown(trimap: np.ndarray) -> bool:
    """Whether a grey trimap leaves any pixel to the network (the rest is forced to 0 or 1)."""
    return bool((trimap_to_classes(trimap) == UNKNOWN).any())


def known_regions_warning(trimap: np.ndarray) -> str:
    """'' for a grey trimap the network can work with, else what is wrong with it, in words for
    a warning: no unknown pixel (the alpha is the known regions), known regions on fewer than
    MIN_KNOWN_FRACTION of the pixels, or no known foreground (the alpha comes out near 0). A small
    subject in a large known background is fine: the known fraction counts the background too."""
    classes = trimap_to_classes(trimap)
    if not (classes == UNKNOWN).any():
        return ("the trimap has no unknown pixel, so the alpha is just its known regions and the network's "
                "prediction is not used; mark the uncertain band grey (128)")
    known = float((classes != UNKNOWN).mean())
    if known < MIN_KNOWN_FRACTION:
        return (f"only {100 * known:.2g} % of the trimap is known foreground or background, under the "
                f"{100 * MIN_KNOWN_FRACTION:g} % the network needs to go on, so the alpha comes out near 0; "
                "narrow the unknown (grey) band to the uncertain edge")
    if not (classes == FOREGROUND).any():
        return ("the trimap has no known foreground (white, >= 170): the network needs part of the subject "
                "marked as sure, and without it the alpha comes out near 0; mark the subject's inside white")
    return ""


def trimap_to_classes(trimap: np.ndarray) -> np.ndarray:
    """Grey trimap (0..255 scale) -> int64 classes: < 85 background, >= 170 foreground, else unknown."""
    classes = np.full(trimap.shape, UNKNOWN, dtype=np.int64)
    classes[trimap < BACKGROUND_BELOW] = BACKGROUND
    classes[trimap >= FOREGROUND_FROM] = FOREGROUND
    return classes


LABEL_TRIMAP_GREYS = np.array([0, 128, 255], dtype=np.uint8)


def label_trimap_to_grey(trimap: np.ndarray) -> Optional[np.ndarray]:
    """A trimap saved as labels 0/1/2 (8-bit, max 1 or 2) as the grey 0/128/255 trimap_to_classes
    expects, or None for any other trimap: read as grey, those labels would all be background."""
    if trimap.dtype != np.uint8 or not 1 <= trimap.max() <= 2:
        return None
    return LABEL_TRIMAP_GREYS[trimap]


def image_to_tensor(image_bgr: np.ndarray) -> torch.Tensor:
    """H x W x 3 BGR on the 0..255 scale -> 3 x H x W RGB, ImageNet-normalised float32, with the
    published code's operation order so results match it to the bit."""
    image = image_bgr[:, :, ::-1].transpose((2, 0, 1)).astype(np.float32)
    image /= 255.
    return torch.from_numpy(image).sub_(IMAGENET_MEAN).div_(IMAGENET_STD)


def classes_to_tensor(classes: np.ndarray, trimap_channel: int) -> torch.Tensor:
    """H x W classes -> one-hot 3 x H x W, or 1 x H x W holding 0/1/2 when trimap_channel is 1."""
    classes = torch.from_numpy(np.ascontiguousarray(classes)).long()
    if trimap_channel == 3:
        return F.one_hot(classes, num_classes=3).permute(2, 0, 1).float()
    return classes[None, ...].float()


def inference_padding(height: int, width: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """((top, bottom), (left, right)): 32 px on every side plus bottom/right up to a multiple of 32."""
    extra_h = -height % SIZE_MULTIPLE
    extra_w = -width % SIZE_MULTIPLE
    return ((INFERENCE_MARGIN, INFERENCE_MARGIN + extra_h), (INFERENCE_MARGIN, INFERENCE_MARGIN + extra_w))


def bottom_right_padding(height: int, width: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """((0, bottom), (0, right)) up to a multiple of 32: how evaluation samples are padded."""
    return ((0, -height % SIZE_MULTIPLE), (0, -width % SIZE_MULTIPLE))


def reflect_pad(array: np.ndarray, padding: Tuple[Tuple[int, int], Tuple[int, int]]) -> np.ndarray:
    return np.pad(array, padding + ((0, 0),) * (array.ndim - 2), mode="reflect")


def force_known_regions(alpha: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """alpha = 1 on known foreground, 0 on known background (in place); both N x 1 x H x W."""
    alpha[classes == FOREGROUND] = 1
    alpha[classes == BACKGROUND] = 0
    return alpha


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """float alpha in [0, 1] -> uint8, truncating as the published demo does."""
    return (alpha * 255).astype(np.uint8)


def alpha_to_uint8_rounded(alpha: np.ndarray) -> np.ndarray:
    """float alpha in [0, 1] -> uint8, rounded (the test phase's predictions and ground truth)."""
    return np.round(alpha * 255).astype(np.uint8)
