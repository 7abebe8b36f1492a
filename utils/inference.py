"""One image through a matting network: pad, forward, force the known regions, crop back."""
import warnings
from functools import partial
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from utils.preprocess import (alpha_to_uint8, alpha_to_uint8_rounded, bottom_right_padding, classes_to_tensor,
                              force_known_regions, image_to_tensor, inference_padding, reflect_pad, trimap_to_classes)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def check_precision(precision: str, device: torch.device) -> None:
    """Refuses what cannot run; warns where bf16 would run but slowly."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 inference needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 runs through slow "
                      "fallbacks here, many times slower than fp32; use --precision fp32", stacklevel=2)


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


# The identity comes first in each: it supplies `info`.
TTA_VIEWS = {
    "none": [_view(0, False)],
    "flip": [_view(0, False), _view(0, True)],
    "d8": [_view(turns, mirror) for mirror in (False, True) for turns in range(4)],
}
TTA_MODES = tuple(TTA_VIEWS)


def check_tta(tta: str) -> None:
    """Refuses a tta the views do not name."""
    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")


def _average_views(predict: Callable[[np.ndarray, np.ndarray], Tuple[np.ndarray, Any]], image: np.ndarray,
                   trimap: np.ndarray, tta: str) -> Tuple[np.ndarray, Any]:
    """The mean of the float alphas `predict` gives for each view of (image, trimap), each mapped
    back, and what else it returned for the identity view. For tta="none" the one alpha, unchanged."""
    check_tta(tta)
    total, first = 0, None
    for index, (forward, inverse) in enumerate(TTA_VIEWS[tta]):
        alpha, extra = predict(forward(image), forward(trimap))
        total = total + inverse(alpha)
        if index == 0:
            first = extra
    return total / len(TTA_VIEWS[tta]), first


def _predict_padded(model: nn.Module, image_bgr: np.ndarray, trimap: np.ndarray, trimap_channel: int,
                    device: torch.device, precision: str) -> Tuple[np.ndarray, Optional[Dict]]:
    """Float alpha H x W of one view, padded as inference_padding says and cropped back."""
    height, width = trimap.shape
    padding = inference_padding(height, width)
    classes = trimap_to_classes(reflect_pad(trimap, padding))
    image = image_to_tensor(reflect_pad(image_bgr, padding))[None].to(device)
    trimap_tensor = classes_to_tensor(classes, trimap_channel)[None].to(device)
    with torch.no_grad():
        with autocast_for(precision, device):
            alpha, info = model(image, trimap_tensor)
        alpha = force_known_regions(alpha.float(), torch.from_numpy(classes)[None, None].to(device))
    (top, _), (left, _) = padding
    alpha = alpha[0, 0].float().cpu().numpy()
    if not np.isfinite(alpha).all():
        raise FloatingPointError("the network produced NaN or infinite alpha values; "
                                 "the checkpoint may be damaged")
    return alpha[top:top + height, left:left + width], info


def predict_alpha(model: nn.Module, image_bgr: np.ndarray, trimap: np.ndarray, trimap_channel: int,
                  device: torch.device, precision: str = "fp32",
                  tta: str = "none") -> Tuple[np.ndarray, Optional[Dict]]:
    """image H x W x 3 BGR and grey trimap H x W (0..255 scale) -> uint8 alpha H x W and the
    network's info dict (GCA offsets and scales, on the padded 1/16 grid of the untransformed
    view) or None. bf16 / fp16 run the convolutions under autocast; GCA's attention stays fp32.

    tta (test-time augmentation): "none", one pass; "flip", the image and its left-right mirror;
    "d8", the 4 rotations x 2 mirrorings, as AEMatter's evaluation uses. Each view is padded on
    its own, so a rotated one is as valid an input as the original. The float alphas of the
    views are averaged and truncated to uint8 once, so "none" is the published single pass to
    the bit. AEMatter's evaluation instead averages passes each already truncated to uint8,
    so every pass's truncation (0 to 1 level, half a level on average) stays in its mean."""
    predict = partial(_predict_padded, model, trimap_channel=trimap_channel, device=device, precision=precision)
    alpha, info = _average_views(predict, image_bgr, trimap, tta)
    return alpha_to_uint8(alpha), info


def predict_batch(model: nn.Module, image: torch.Tensor, trimap: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Alpha for a padded evaluation batch, the known regions forced."""
    with autocast_for(precision, image.device):
        alpha, _ = model(image, trimap)
    classes = trimap.argmax(dim=1, keepdim=True) if trimap.shape[1] == 3 else trimap.long()
    return force_known_regions(alpha.float(), classes)


def _predict_bottom_right_padded(model: nn.Module, image: np.ndarray, trimap: np.ndarray, device: torch.device,
                                 precision: str) -> Tuple[np.ndarray, None]:
    """Float alpha H x W of one view of network-ready H x W x C arrays, reflect-padded at the
    bottom/right to a multiple of 32 as EvalDataset pads, and cropped back."""
    height, width = image.shape[:2]
    padding = bottom_right_padding(height, width)

    def to_batch(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(reflect_pad(array, padding).transpose(2, 0, 1)))[None].to(device)
    alpha = predict_batch(model, to_batch(image), to_batch(trimap), precision)
    return alpha[0, 0, :height, :width].cpu().numpy(), None


def predict_eval_batch(model: nn.Module, batch: Dict, device: torch.device, precision: str = "fp32",
                       tta: str = "none") -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """One evaluation sample as eval_loader batches it (padded image and trimap, `alpha_shape` to
    crop back to) -> the alpha cropped to the image, 1 x 1 x h x w on the CPU, and the
    prediction and the ground truth as the uint8 mattes the metrics compare. With tta (see
    predict_alpha) each view of the unpadded sample is padded at the bottom/right on its own;
    the mean float alpha is rounded, as the single pass is."""
    check_tta(tta)
    h, w = (int(v) for v in batch["alpha_shape"])
    if tta == "none":
        alpha = predict_batch(model, batch["image"].to(device), batch["trimap"].to(device), precision)
        alpha = alpha[..., :h, :w].cpu()
    else:
        image, trimap = (batch[key][0, :, :h, :w].cpu().permute(1, 2, 0).numpy() for key in ("image", "trimap"))
        predict = partial(_predict_bottom_right_padded, model, device=device, precision=precision)
        mean, _ = _average_views(predict, image, trimap, tta)
        alpha = torch.from_numpy(np.ascontiguousarray(mean))[None, None]
    return alpha, alpha_to_uint8_rounded(alpha[0, 0].numpy()), alpha_to_uint8_rounded(batch["alpha"][0, 0].numpy())
