"""One image through a matting network: pad, forward, force the known regions, crop back."""
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from utils.preprocess import (alpha_to_uint8, alpha_to_uint8_rounded, classes_to_tensor, force_known_regions,
                              image_to_tensor, inference_padding, reflect_pad, trimap_to_classes)


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


def predict_alpha(model: nn.Module, image_bgr: np.ndarray, trimap: np.ndarray, trimap_channel: int,
                  device: torch.device, precision: str = "fp32") -> Tuple[np.ndarray, Optional[Dict]]:
    """image H x W x 3 BGR and grey trimap H x W (0..255 scale) -> uint8 alpha H x W and the
    network's info dict (GCA offsets and scales, on the padded 1/16 grid) or None. bf16 / fp16
    run the convolutions under autocast; GCA's attention stays fp32."""
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
    return alpha_to_uint8(alpha)[top:top + height, left:left + width], info


def predict_batch(model: nn.Module, image: torch.Tensor, trimap: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Alpha for a padded evaluation batch, the known regions forced."""
    with autocast_for(precision, image.device):
        alpha, _ = model(image, trimap)
    classes = trimap.argmax(dim=1, keepdim=True) if trimap.shape[1] == 3 else trimap.long()
    return force_known_regions(alpha.float(), classes)


def predict_eval_batch(model: nn.Module, batch: Dict, device: torch.device,
                       precision: str = "fp32") -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """One evaluation sample as eval_loader batches it (padded image and trimap, `alpha_shape` to
    crop back to) -> the alpha cropped to the image, 1 x 1 x h x w on the CPU, and the
    prediction and the ground truth as the uint8 mattes the metrics compare."""
    h, w = (int(v) for v in batch["alpha_shape"])
    alpha = predict_batch(model, batch["image"].to(device), batch["trimap"].to(device), precision)
    alpha = alpha[..., :h, :w].cpu()
    return alpha, alpha_to_uint8_rounded(alpha[0, 0].numpy()), alpha_to_uint8_rounded(batch["alpha"][0, 0].numpy())
