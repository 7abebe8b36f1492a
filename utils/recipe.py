"""A model family's recipe: how a photo and its trimap become the network's input, and the network's
output an 8-bit alpha. Each released model was evaluated with its own (the normalisation, the trimap
encoding, the padding, which trimap pixels are forced to 0 or 1, truncation or rounding), and its
published figures hold only with it.

The steps are torch operations on one image (H x W x 3 RGB and H x W grey, uint8 or float on the
0..255 scale), so the same code serves demo.py, the test phase and the ONNX export, whose graph
torch.export captures for any image size.
"""
import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# OpenMMLab's configs give the ImageNet statistics on the 0..255 scale, as these float literals.
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2
# GCA-Matting's grey trimap thresholds: below 85 background, from 170 on foreground.
BACKGROUND_BELOW, FOREGROUND_FROM = 85, 170
UNKNOWN_GREY, FOREGROUND_GREY = 128, 255
# Known foreground plus known background below this fraction of the pixels, or no known
# foreground at all, leave the network too little to go on: its alpha comes out near 0 (with
# the quickstart's model, 0.01 to 0.05 on average where the ground truth's is 0.28 to 0.76).
MIN_KNOWN_FRACTION = 0.01
EDGES = ("reflect", "symmetric")
ROUNDINGS = ("truncate", "round")

Encoder = Callable[[torch.Tensor], torch.Tensor]


class ImageSizeError(ValueError):
    """An image a recipe cannot take (too small for the scales it runs the network at)."""


Region = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Padding:
    """Reflect padding to a multiple of `multiple`: `margin` px on every side first, then the rest
    at the bottom/right, or split over both sides (`centred`, the top/left getting the smaller
    half). `edge` "reflect" mirrors without repeating the edge pixel (numpy's and torch's
    reflect); "symmetric" repeats it (OpenCV's BORDER_REFLECT)."""
    multiple: int = 32
    margin: int = 0
    centred: bool = False
    edge: str = "reflect"

    def sides(self, size: int) -> Tuple[int, int]:
        """(before, after) for an axis of `size` pixels."""
        extra = (self.multiple - size % self.multiple) % self.multiple
        before = extra // 2 if self.centred else 0
        return self.margin + before, self.margin + extra - before

    def indices(self, size, device: torch.device) -> torch.Tensor:
        """The source index of every padded position along an axis, for reflections of any length
        (the mirror image repeats with a period): index_select with them pads."""
        before, after = self.sides(size)
        index = torch.arange(-before, size + after, device=device)
        if self.edge == "reflect":
            period = torch.full((), torch.sym_max(2 * (size - 1), 1), dtype=torch.long)
            index = torch.remainder(index, period)
            return torch.minimum(index, period - index)
        period = torch.full((), 2 * size, dtype=torch.long)
        index = torch.remainder(index, period)
        return torch.minimum(index, period - 1 - index)

    def pad(self, array: torch.Tensor) -> torch.Tensor:
        """An H x W [x C] tensor padded along its first two axes."""
        rows, columns = (self.indices(size, array.device) for size in array.shape[:2])
        return array.index_select(0, rows).index_select(1, columns)

    def crop(self, padded: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The H x W of the image from a ... x H' x W' tensor padded by `pad`."""
        top, left = self.sides(height)[0], self.sides(width)[0]
        return padded[..., top:top + height, left:left + width]


def _channels_first(image: torch.Tensor) -> torch.Tensor:
    return image.permute(2, 0, 1).float()


def imagenet_normalised(image: torch.Tensor) -> torch.Tensor:
    """H x W x 3 RGB -> 3 x H x W: /255, minus the ImageNet mean, over its std, in that order
    (GCA-Matting's order; its float32 results to the bit)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (_channels_first(image) / 255. - mean) / std


def imagenet_normalised_255(image: torch.Tensor) -> torch.Tensor:
    """H x W x 3 RGB -> 3 x H x W: (x - 255 mean) / (255 std), OpenMMLab's data preprocessor."""
    mean = torch.tensor(IMAGENET_MEAN_255).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD_255).view(3, 1, 1)
    return (_channels_first(image) - mean) / std


def unit_range(image: torch.Tensor) -> torch.Tensor:
    """H x W x 3 RGB -> 3 x H x W on 0..1, no normalisation."""
    return _channels_first(image) / 255.


def threshold_classes(trimap: torch.Tensor) -> torch.Tensor:
    """Grey H x W -> int64 classes: < 85 background, >= 170 foreground, else unknown (GCA-Matting)."""
    unknown = torch.full_like(trimap, UNKNOWN, dtype=torch.long)
    classes = torch.where(trimap >= FOREGROUND_FROM, FOREGROUND, unknown)
    return torch.where(trimap < BACKGROUND_BELOW, BACKGROUND, classes)


def threshold_one_hot(trimap: torch.Tensor) -> torch.Tensor:
    """Grey H x W -> 3 x H x W one-hot of threshold_classes."""
    return F.one_hot(threshold_classes(trimap), num_classes=3).permute(2, 0, 1).float()


def threshold_labels(trimap: torch.Tensor) -> torch.Tensor:
    """Grey H x W -> 1 x H x W holding threshold_classes' 0 / 1 / 2."""
    return threshold_classes(trimap)[None].float()


def exact_one_hot(trimap: torch.Tensor) -> torch.Tensor:
    """Grey H x W -> 3 x H x W: channel 0 where the grey is exactly 0, 1 where 128, 2 where 255;
    any other grey is all zeros (OpenMMLab's FormatTrimap(to_onehot=True))."""
    return torch.stack([trimap == 0, trimap == UNKNOWN_GREY, trimap == FOREGROUND_GREY]).float()


def exact_labels(trimap: torch.Tensor) -> torch.Tensor:
    """Grey H x W -> 1 x H x W: 128 becomes 1 and 255 becomes 2; every other grey keeps its value
    (OpenMMLab's FormatTrimap(to_onehot=False), which maps only those two)."""
    trimap = trimap.float()
    labels = torch.where(trimap == UNKNOWN_GREY, 1.0, trimap)
    return torch.where(trimap == FOREGROUND_GREY, 2.0, labels)[None]


def grey_unit(trimap: torch.Tensor) -> torch.Tensor:
    """Grey H x W -> 1 x H x W: the grey / 255."""
    return trimap[None].float() / 255.


def threshold_foreground(trimap: torch.Tensor) -> torch.Tensor:
    return trimap >= FOREGROUND_FROM


def threshold_background(trimap: torch.Tensor) -> torch.Tensor:
    return trimap < BACKGROUND_BELOW


def exact_foreground(trimap: torch.Tensor) -> torch.Tensor:
    return trimap == FOREGROUND_GREY


def exact_background(trimap: torch.Tensor) -> torch.Tensor:
    return trimap == 0


def every_other_grey_background(trimap: torch.Tensor) -> torch.Tensor:
    """Every grey but exactly 128 and 255: AEMatter's evaluation keeps the network's alpha where
    the trimap is 128, sets 255 where it is 255 and 0 everywhere else."""
    return (trimap != UNKNOWN_GREY) & (trimap != FOREGROUND_GREY)


def nowhere(trimap: torch.Tensor) -> torch.Tensor:
    """No pixel: the region predicate of a recipe that forces none."""
    return torch.zeros_like(trimap, dtype=torch.bool)


@dataclass(frozen=True)
class Recipe:
    """A family's pre- and post-processing around its network, which is called as
    network(image N x 3 x H' x W', trimap N x C x H' x W' or None) -> (alpha N x 1 x H' x W', info).

    image / trimap: the encodings of the RGB image and the grey trimap (trimap None: the family
    predicts from the image alone, takes no trimap at all and overrides `run`, which then gets
    trimap None); padding: of both before the network, cropped off after; foreground /
    background: the trimap pixels whose alpha is forced to 1 / 0 after the network (the rest is
    the network's, clamped to [0, 1]); rounding of alpha x 255 to uint8: "truncate" or "round";
    score_float: an evaluation recipe whose published figures score the float alpha (AIM's),
    not the 8-bit one written."""
    name: str
    image: Encoder
    trimap: Optional[Encoder]
    padding: Padding
    foreground: Region
    background: Region
    rounding: str
    score_float: bool = False

    def __post_init__(self) -> None:
        if self.padding.edge not in EDGES:
            raise ValueError(f"padding edge must be one of {EDGES}, got {self.padding.edge!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")

    @property
    def takes_trimap(self) -> bool:
        return self.trimap is not None

    def inputs(self, image_rgb: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The padded network inputs, batches of one."""
        image = self.image(self.padding.pad(image_rgb))[None]
        if self.trimap is None:
            return image, None
        return image, self.trimap(self.padding.pad(trimap))[None]

    def finish(self, alpha: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        """The network's padded N x 1 x H' x W' alpha -> H x W float: cropped, clamped to [0, 1],
        the known regions forced."""
        height, width = trimap.shape
        alpha = self.padding.crop(alpha[0, 0], height, width).float().clamp(0, 1)
        alpha = torch.where(self.foreground(trimap), 1.0, alpha)
        return torch.where(self.background(trimap), 0.0, alpha)

    def run(self, network: nn.Module, image_rgb: torch.Tensor, trimap: torch.Tensor,
            autocast: Optional[Callable] = None) -> Tuple[torch.Tensor, Optional[Dict]]:
        """(alpha H x W float in [0, 1], the network's info) for image H x W x 3 RGB and grey trimap
        H x W: inputs, the network (inside `autocast()` where given), finish. A family whose
        inference is more than one padded pass (several scales, say) overrides this."""
        image, trimap_input = self.inputs(image_rgb, trimap)
        with autocast() if autocast is not None else contextlib.nullcontext():
            alpha, info = network(image, trimap_input)
        return self.finish(alpha, trimap), info

    def unknown(self, trimap: torch.Tensor) -> torch.Tensor:
        """The pixels whose alpha is the network's (neither forced)."""
        return ~(self.foreground(trimap) | self.background(trimap))

    def has_unknown(self, trimap: np.ndarray) -> bool:
        """Whether a grey trimap leaves any pixel to the network (the rest is forced to 0 or 1)."""
        return bool(self.unknown(torch.from_numpy(np.ascontiguousarray(trimap))).any())

    def known_regions_warning(self, trimap: np.ndarray) -> str:
        """'' for a grey trimap the network can work with, else what is wrong with it, in words for
        a warning: no unknown pixel (the alpha is the known regions), known regions on fewer than
        MIN_KNOWN_FRACTION of the pixels, or no known foreground (the alpha comes out near 0). A small
        subject in a large known background is fine: the known fraction counts the background too."""
        grey = torch.from_numpy(np.ascontiguousarray(trimap))
        unknown = self.unknown(grey)
        if not unknown.any():
            return ("the trimap has no unknown pixel, so the alpha is just its known regions and the network's "
                    "prediction is not used; mark the uncertain band grey (128)")
        known = 1.0 - float(unknown.float().mean())
        if known < MIN_KNOWN_FRACTION:
            return (f"only {100 * known:.2g} % of the trimap is known foreground or background, under the "
                    f"{100 * MIN_KNOWN_FRACTION:g} % the network needs to go on, so the alpha comes out near 0; "
                    "narrow the unknown (grey) band to the uncertain edge")
        if not self.foreground(grey).any():
            return ("the trimap has no known foreground (white): the network needs part of the subject marked as "
                    "sure, and without it the alpha comes out near 0; mark the subject's inside white")
        return ""

    def to_uint8(self, alpha: torch.Tensor) -> torch.Tensor:
        """Float alpha in [0, 1] -> uint8, truncated or rounded (half to even) as the family does."""
        scaled = alpha * 255
        return (scaled.round() if self.rounding == "round" else scaled).to(torch.uint8)


class RecipeForward(nn.Module):
    """A network inside its recipe, as one module: forward(image H x W x 3 RGB, trimap H x W grey)
    -> (alpha H x W float in [0, 1], the network's info); `autocast` wraps the network's call (the
    recipe's arithmetic stays fp32). What predict_float runs and the ONNX export captures."""

    def __init__(self, network: nn.Module, recipe: Recipe, autocast: Optional[Callable] = None):
        super().__init__()
        self.network, self.recipe = network, recipe
        self.autocast = autocast

    def forward(self, image_rgb: torch.Tensor, trimap: torch.Tensor):
        return self.recipe.run(self.network, image_rgb, trimap, self.autocast)
