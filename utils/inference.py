"""One image through a matting network: pad, forward, force the known regions, crop back."""
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from utils.preprocess import (alpha_to_uint8, classes_to_tensor, force_known_regions, image_to_tensor,
                              inference_padding, reflect_pad, trimap_to_classes)


def predict_alpha(model: nn.Module, image_bgr: np.ndarray, trimap: np.ndarray, trimap_channel: int,
                  device: torch.device) -> Tuple[np.ndarray, Optional[Dict]]:
    """image H x W x 3 BGR and grey trimap H x W (0..255 scale) -> uint8 alpha H x W and the
    network's info dict (GCA offsets and scales, on the padded 1/16 grid) or None."""
    height, width = trimap.shape
    padding = inference_padding(height, width)
    classes = trimap_to_classes(reflect_pad(trimap, padding))
    image = image_to_tensor(reflect_pad(image_bgr, padding))[None].to(device)
    trimap_tensor = classes_to_tensor(classes, trimap_channel)[None].to(device)
    with torch.no_grad():
        alpha, info = model(image, trimap_tensor)
        force_known_regions(alpha, torch.from_numpy(classes)[None, None].to(device))
    (top, _), (left, _) = padding
    alpha = alpha[0, 0].float().cpu().numpy()
    if not np.isfinite(alpha).all():
        raise FloatingPointError("the network produced NaN or infinite alpha values; "
                                 "the checkpoint may be damaged")
    return alpha_to_uint8(alpha)[top:top + height, left:left + width], info
