"""ViTMatte's two recipes: the original code's (hustvl/ViTMatte: run_one_image.py, inference.py and
the meta-architecture's preprocess_inputs) and transformers' (VitMatteImageProcessor, then
VitMatteForImageMatting).

Both read the image as RGB / 255 and the trimap as grey / 255, normalise the image, put the trimap
beside it as a fourth channel and zero-pad the four to a multiple of 32 at the bottom and right,
after the normalisation; neither forces the known regions of the trimap, and the alpha is the
sigmoid's, cropped. They differ in two places:
- the normalisation: the original's is ImageNet's mean and std (configs/common/model.py), the one
  its released weights were trained with (data/dim_dataset.py's ToTensor only divides by 255; the
  model normalises); transformers' processor uses the values of the hub folder's
  preprocessor_config.json, which for the released folders, as its defaults, are 0.5 and 0.5;
- the padding: transformers' pads each side to the next multiple of 32 (none where it is one
  already); the original's, when either side needs padding, adds 32 - side % 32 to both, so a side
  that is already a multiple of 32 gets 32 more rows or columns.

Here the network itself normalises (its pixel_mean / pixel_std buffers, which the family fills in
at load from the recipe: `original_normalisation`, `transformers_normalisation`) and pads
(`pad_for_network`), as the original meta-architecture does inside its model; the Recipe around it
only encodes the 8-bit arrays and truncates the alpha (torchvision's to_pil_image, which both
original scripts save with, multiplies by 255 and truncates)."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from utils.checkpoint import CheckpointError
from utils.recipe import (IMAGENET_MEAN_255, IMAGENET_STD_255, Padding, Recipe, grey_unit, threshold_background,
                          threshold_foreground, unit_range)

ORIGINAL, TRANSFORMERS = "original", "transformers"
PADDINGS = (ORIGINAL, TRANSFORMERS)
MULTIPLE = 32
# configs/common/model.py: pixel_mean = [123.675 / 255., ...], pixel_std = [58.395 / 255., ...].
ORIGINAL_MEAN = tuple(value / 255. for value in IMAGENET_MEAN_255)
ORIGINAL_STD = tuple(value / 255. for value in IMAGENET_STD_255)
# VitMatteImageProcessor's defaults (transformers' IMAGENET_STANDARD_MEAN / _STD), which the
# released hub folders' preprocessor_config.json also give.
TRANSFORMERS_MEAN = TRANSFORMERS_STD = (0.5, 0.5, 0.5)
RESCALE_FACTOR = 1 / 255
Normalisation = Tuple[Tuple[float, ...], Tuple[float, ...]]


def padded_size(height, width, rule: str):
    """(height, width) after the rule's zero padding at the bottom and the right. Written with
    arithmetic only, no branch on the sizes, so that an exported graph keeps any image size, and
    as 32 x a whole number of blocks, so that torch.export sees every later size (the patches,
    the windows, the decoder's scales) as a multiple of it and reasons about them in seconds."""
    if rule == TRANSFORMERS:
        return MULTIPLE * ((height + MULTIPLE - 1) // MULTIPLE), MULTIPLE * ((width + MULTIPLE - 1) // MULTIPLE)
    # meta_arch/vitmatte.py: if H % 32 or W % 32: new_H = 32 - H % 32 + H (= 32 (H // 32 + 1)), new_W likewise.
    needs = torch.sym_min(1, height % MULTIPLE + width % MULTIPLE)
    return MULTIPLE * (height // MULTIPLE + needs), MULTIPLE * (width // MULTIPLE + needs)


def padding_sides(height, width, rule: str):
    """(rows, columns) of zeros the rule adds at the bottom and the right."""
    padded_height, padded_width = padded_size(height, width, rule)
    return padded_height - height, padded_width - width


def pad_for_network(inputs: torch.Tensor, rule: str) -> torch.Tensor:
    """N x C x H x W zero-padded at the bottom and right by `rule` (PADDINGS)."""
    rows, columns = padding_sides(inputs.shape[2], inputs.shape[3], rule)
    return F.pad(inputs, (0, columns, 0, rows))


def original_normalisation() -> Normalisation:
    return ORIGINAL_MEAN, ORIGINAL_STD


def _three(value, key: str, path: str) -> Tuple[float, ...]:
    """A preprocessor value given as one number or as three."""
    values = [value] * 3 if isinstance(value, (int, float)) else value
    numbers = isinstance(values, (list, tuple)) and all(isinstance(v, (int, float)) for v in values)
    if not numbers or len(values) != 3:
        raise CheckpointError(f"{path}: {key} must be a number or a list of 3 numbers, got {value!r}.")
    return tuple(float(v) for v in values)


def transformers_normalisation(preprocessor: Optional[Dict], path: str) -> Normalisation:
    """(mean, std) on the 0..1 scale that VitMatteImageProcessor applies with a hub folder's
    preprocessor_config.json (None: the processor's defaults). Settings this recipe does not carry
    out (another rescale factor, no padding or another multiple) get a one-line CheckpointError."""
    settings = preprocessor or {}
    kind = settings.get("image_processor_type", "VitMatteImageProcessor")
    if not str(kind).startswith("VitMatteImageProcessor"):
        raise CheckpointError(f"{path}: its preprocessor_config.json is for {kind}, not VitMatteImageProcessor.")
    rescale = settings.get("rescale_factor", RESCALE_FACTOR)
    rescaled = settings.get("do_rescale", True) and isinstance(rescale, (int, float))
    if not rescaled or abs(rescale - RESCALE_FACTOR) > 1e-12:
        raise CheckpointError(f"{path}: its preprocessor_config.json rescales by something other than 1/255 "
                              f"(do_rescale {settings.get('do_rescale')!r}, rescale_factor "
                              f"{settings.get('rescale_factor')!r}), which config/vitmatte-*-hf.toml does not do.")
    divisor = settings.get("size_divisor", settings.get("size_divisibility", MULTIPLE))
    if not settings.get("do_pad", True) or divisor != MULTIPLE:
        raise CheckpointError(f"{path}: its preprocessor_config.json pads to {divisor} (do_pad "
                              f"{settings.get('do_pad', True)!r}); ViTMatte's configs pad to a multiple of {MULTIPLE}.")
    if not settings.get("do_normalize", True):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return (_three(settings.get("image_mean", TRANSFORMERS_MEAN), "image_mean", path),
            _three(settings.get("image_std", TRANSFORMERS_STD), "image_std", path))


def normalisation_tensors(normalisation: Normalisation) -> Dict[str, torch.Tensor]:
    """The network's pixel_mean and pixel_std buffers (3 x 1 x 1) for a normalisation."""
    mean, std = normalisation
    return {"pixel_mean": torch.tensor(mean).view(3, 1, 1), "pixel_std": torch.tensor(std).view(3, 1, 1)}


@dataclass(frozen=True)
class ViTMatteRecipe(Recipe):
    """The Recipe around the network, which normalises and pads itself: no padding here, and no
    region forced after it (neither source forces any). foreground / background (GCA-Matting's
    thresholds, which the original's training trimaps are cut by: < 85, >= 170) only say which
    trimap pixels are known, for the warnings about trimaps."""

    def finish(self, alpha: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        height, width = trimap.shape
        return self.padding.crop(alpha[0, 0], height, width).float().clamp(0, 1)


def vitmatte_recipe(name: str) -> ViTMatteRecipe:
    return ViTMatteRecipe(name, unit_range, grey_unit, Padding(multiple=1), threshold_foreground, threshold_background,
                          "truncate")
