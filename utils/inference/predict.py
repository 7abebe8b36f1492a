"""One image through a matting network inside its family's recipe, with test-time augmentation."""
import warnings
from functools import partial
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from utils.recipe import Recipe, RecipeForward


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX tiles, the one kind of CPU where bf16 is offered: without them (AVX-512
    with AVX512-BF16 included) bf16 inference measured slower than fp32 (docs/performance.md)."""
    return torch.cpu._is_amx_tile_supported()


def offered_precisions(device: torch.device) -> Tuple[str, ...]:
    """The precisions worth choosing on `device`: fp16 on CUDA only, bf16 on CUDA or an AMX CPU."""
    return tuple(name for name in PRECISIONS
                 if device.type == "cuda" or name == "fp32" or (name == "bf16" and cpu_has_amx()))


def runnable_precision(precision: str, device: torch.device) -> str:
    """The precision to run `precision` in on `device`: ValueError for what cannot run; bf16 on a
    CPU without AMX runs fp32, with a warning saying why."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 inference needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision not in offered_precisions(device):
        warnings.warn("bf16 runs as fp32 on this CPU: it has no AMX, and without AMX bf16 inference measured "
                      "slower than fp32 (docs/performance.md)", stacklevel=2)
        return "fp32"
    return precision


def autocast_for(precision: str, device: torch.device):
    """The autocast context of a precision (a disabled one for fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


Transform = Callable[[np.ndarray], np.ndarray]


def _view(quarter_turns: int, mirror: bool) -> Tuple[Transform, Transform]:
    """(forward, inverse) on H x W [x C] arrays: mirror left-right if asked, then rotate."""
    def forward(array: np.ndarray) -> np.ndarray:
        return np.rot90(array[:, ::-1] if mirror else array, quarter_turns)

    def inverse(array: np.ndarray) -> np.ndarray:
        array = np.rot90(array, -quarter_turns)
        return array[:, ::-1] if mirror else array
    return forward, inverse


_D8 = [_view(turns, mirror) for mirror in (False, True) for turns in range(4)]
# The identity comes first in each: it supplies `info`.
TTA_VIEWS = {
    "none": [_view(0, False)],
    "flip": [_view(0, False), _view(0, True)],
    "d8": _D8,
    "d8-uint8": _D8,
}
TTA_MODES = tuple(TTA_VIEWS)
# Modes whose views are each quantised by the recipe, then averaged and the mean truncated to
# uint8 (AEMatter's eval_tta.py, whose 8 passes are the d8 views in another order).
QUANTISED_VIEWS = frozenset({"d8-uint8"})


def check_tta(tta: str) -> None:
    """Refuses a tta the views do not name."""
    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")


def _combine_views(predict: Callable[[np.ndarray, Optional[np.ndarray]], Tuple[np.ndarray, Any]], recipe: Recipe,
                   image: np.ndarray, trimap: Optional[np.ndarray], tta: str) -> Tuple[np.ndarray, np.ndarray, Any]:
    """(float alpha, uint8 alpha, what else `predict` returned for the identity view) over the views
    of (image, trimap or None), each mapped back: the mean of the views' float alphas and the recipe's
    quantisation of it; for a mode of QUANTISED_VIEWS, the mean of the views' quantised alphas (on
    0..1) and that mean truncated. For tta="none" the one alpha, unchanged."""
    check_tta(tta)
    views, per_view = TTA_VIEWS[tta], tta in QUANTISED_VIEWS
    total, first = 0, None
    for index, (forward, inverse) in enumerate(views):
        alpha, extra = predict(forward(image), None if trimap is None else forward(trimap))
        total = total + inverse(to_uint8(recipe, alpha).astype(np.int64) if per_view else alpha)
        if index == 0:
            first = extra
    if per_view:
        return (total / (255. * len(views))).astype(np.float32), (total // len(views)).astype(np.uint8), first
    alpha = total / len(views)
    return alpha, to_uint8(recipe, alpha), first


def predict_float(network: nn.Module, recipe: Recipe, image_bgr: np.ndarray, trimap: Optional[np.ndarray],
                  device: torch.device, precision: str = "fp32") -> Tuple[np.ndarray, Optional[Dict]]:
    """One view through the recipe and the network: H x W x 3 BGR and grey H x W (0..255 scale; None
    for a recipe that takes no trimap) -> float alpha H x W, the known regions forced, and the
    network's info (GCA's offsets and scales on the padded 1/16 grid, AIM's trimap) or None.
    FloatingPointError for a non-finite alpha."""
    image = torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1])).to(device)
    trimap_tensor = None if trimap is None else torch.from_numpy(np.ascontiguousarray(trimap)).to(device)
    with torch.no_grad():
        alpha, info = RecipeForward(network, recipe, partial(autocast_for, precision, device))(image, trimap_tensor)
    alpha = alpha.cpu().numpy()
    if not np.isfinite(alpha).all():
        raise FloatingPointError("the network produced NaN or infinite alpha values; "
                                 "the checkpoint may be damaged")
    return alpha, info


def predict_views(network: nn.Module, recipe: Recipe, image_bgr: np.ndarray, trimap: Optional[np.ndarray],
                  device: torch.device, precision: str = "fp32", tta: str = "none") -> Tuple[np.ndarray, np.ndarray, Optional[Dict]]:
    """predict_float over the views of test-time augmentation `tta` (see predict_alpha): the float
    alpha, the uint8 alpha and the network's info of the untransformed view."""
    predict = partial(predict_float, network, recipe, device=device, precision=precision)
    return _combine_views(predict, recipe, image_bgr, trimap, tta)


def to_uint8(recipe: Recipe, alpha: np.ndarray) -> np.ndarray:
    """A float alpha as the recipe quantises it."""
    return recipe.to_uint8(torch.from_numpy(np.ascontiguousarray(alpha))).numpy()


def predict_alpha(network: nn.Module, recipe: Recipe, image_bgr: np.ndarray, trimap: Optional[np.ndarray],
                  device: torch.device, precision: str = "fp32", tta: str = "none") -> Tuple[np.ndarray, Optional[Dict]]:
    """image H x W x 3 BGR and grey trimap H x W (0..255 scale; None for a recipe that takes none) ->
    uint8 alpha H x W as the recipe makes it, and the network's info (of the untransformed view) or
    None. bf16 / fp16 run the network under autocast; GCA's attention stays fp32.

    tta (test-time augmentation): "none", one pass; "flip", the image and its left-right mirror;
    "d8", the 4 rotations x 2 mirrorings; "d8-uint8", the same 8 views as AEMatter's eval_tta.py
    combines them. Each view is padded on its own, so a rotated one is as valid an input as the
    original. "flip" and "d8" average the views' float alphas and quantise once, so "none" is the
    single pass to the bit; "d8-uint8" quantises each view as the recipe does, averages and
    truncates the mean, so that every pass's truncation (0 to 1 level, half a level on average)
    stays in it, as in AEMatter's published TTA figures."""
    _, alpha, info = predict_views(network, recipe, image_bgr, trimap, device, precision, tta)
    return alpha, info


def evaluate_sample(network: nn.Module, recipe: Recipe, sample: Dict, device: torch.device, precision: str = "fp32",
                    tta: str = "none") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An evaluation sample (dataloader.datasets.EvalDataset's) through the recipe: the float alpha,
    the prediction as the recipe quantises it, and the ground truth rounded to uint8."""
    alpha, quantised, _ = predict_views(network, recipe, sample["image"], sample["trimap"], device, precision, tta)
    return alpha, quantised, np.round(sample["alpha"]).astype(np.uint8)


def predicted_trimap(info: Optional[Dict]) -> Optional[np.ndarray]:
    """The grey trimap a model that needs none made for itself (AIM's: the semantic map its fusion
    used), from its info, or None."""
    trimap = (info or {}).get("trimap")
    return None if trimap is None else trimap.cpu().numpy()
