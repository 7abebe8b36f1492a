"""AIM's published inference (core/test.py's inference_img) as a recipe: no trimap, and not one
padded pass. HYBRID runs the network twice: at 1/4 of the photo's size for the semantic map and at
1/2 for the detail alpha, each side rounded down to a multiple of 32 and capped at 1600 px; the two
are resized back to the photo's size with scikit-image's resize (networks/aim/skimage_resize.py) and
fused: the semantic map's value where it is exactly background (0) or foreground (255) after resizing, the
detail alpha everywhere else. RESIZE runs it once at 1/4 and resizes the network's own fusion back.

The demo recipe is test_samples': a photo whose shorter side exceeds 1080 px is first brought to
1080 with OpenCV's bilinear resize, and the alpha x 255 is brought back to the photo's size the same
way before it is truncated. The evaluation recipe is test_aim500's: the photo at its own size, the
float alpha scored as it is (its PNG truncated)."""
import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn as nn

from utils.recipe import ImageSizeError, Recipe
from networks.aim.skimage_resize import resize_like_skimage

STRATEGIES = ("hybrid", "resize")
SEMANTIC_DIVISOR, DETAIL_DIVISOR = 4, 2
MAX_NETWORK_SIDE = 1600  # core/config.py's MAX_SIZE_H and MAX_SIZE_W
SHORTER_SIDE_LIMIT = 1080  # core/config.py's SHORTER_PATH_LIMITATION, applied by test_samples
MULTIPLE = 32
TRIMAP_GREYS = np.array([0, 128, 255], np.uint8)  # the semantic classes background, transition, foreground


def network_side(side: int, divisor: int) -> int:
    """int(side / divisor) rounded down to a multiple of 32, at most 1600."""
    scaled = side // divisor
    return min(MAX_NETWORK_SIDE, scaled - scaled % MULTIPLE)


def limit_shorter_side(photo: np.ndarray, limit: Optional[int]) -> np.ndarray:
    """The photo with its shorter side brought down to `limit` by OpenCV's bilinear resize (the
    longer one to int(limit x its ratio)), or as it is when that side is within the limit."""
    height, width = photo.shape[:2]
    if limit is None or min(height, width) <= limit:
        return photo
    size = (limit, int(limit * height / width)) if height >= width else (int(limit * width / height), limit)
    return cv2.resize(photo, size, interpolation=cv2.INTER_LINEAR)


def semantic_trimap(semantic: np.ndarray) -> np.ndarray:
    """3 x H x W class scores -> the grey trimap of the likeliest class (the first one on a tie)."""
    return TRIMAP_GREYS[semantic.argmax(axis=0)]


def fuse_resized(semantic_255: np.ndarray, detail: np.ndarray) -> np.ndarray:
    """HYBRID's fusion of the resized maps (get_masked_local_from_global_test): the semantic map /
    255 where it is exactly 0 or 255, the detail alpha elsewhere."""
    known = (semantic_255 == 0) | (semantic_255 == 255)
    return np.where(known, semantic_255 / 255, detail)


def transition_trimap(semantic_255: np.ndarray) -> np.ndarray:
    """The trimap HYBRID's fusion uses: 0 and 255 where the resized semantic map is exactly that,
    128 (the detail alpha's pixels) elsewhere."""
    trimap = np.full(semantic_255.shape, 128, np.uint8)
    trimap[semantic_255 == 0], trimap[semantic_255 == 255] = 0, 255
    return trimap


@dataclass(frozen=True)
class AimRecipe(Recipe):
    """strategy: "hybrid" or "resize"; resize: the scikit-image behaviour (utils.skimage_resize);
    shorter_side: test_samples' limit, or None (test_aim500)."""
    strategy: str = "hybrid"
    resize: str = "skimage-0.14"
    shorter_side: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strategy not in STRATEGIES:
            raise ValueError(f"AIM's test strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")

    def scaled(self, photo: np.ndarray, divisor: int) -> np.ndarray:
        """The photo resized for one pass, x 255 (float64)."""
        height, width = photo.shape[:2]
        size = network_side(height, divisor), network_side(width, divisor)
        if min(size) == 0:
            raise ImageSizeError(f"the photo is {width} x {height} px; AIM runs at 1/{divisor} of it, rounded down "
                                 f"to a multiple of {MULTIPLE} px, so it needs at least {MULTIPLE * divisor} px on "
                                 "each side")
        return resize_like_skimage(photo, *size, self.resize) * 255.0

    def forward(self, network: nn.Module, scaled: np.ndarray, device: torch.device,
                autocast: Callable) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(3 x h x w semantic map, detail alpha h x w, the network's fusion h x w) as float32 arrays."""
        image = self.image(torch.from_numpy(scaled.astype(np.float32)).to(device))[None]
        with autocast():
            fused, info = network(image, None)
        return tuple(tensor[0].float().cpu().numpy() for tensor in (info["semantic"], info["detail"][:, 0], fused[:, 0]))

    def predict(self, network: nn.Module, photo: np.ndarray, device: torch.device,
                autocast: Callable) -> Tuple[np.ndarray, np.ndarray]:
        """inference_img: (alpha H x W in [0, 1], float64 or float32, the trimap the fusion used)."""
        height, width = photo.shape[:2]
        semantic, _, fused = self.forward(network, self.scaled(photo, SEMANTIC_DIVISOR), device, autocast)
        semantic_255 = resize_like_skimage(semantic_trimap(semantic), height, width, self.resize) * 255.0
        if self.strategy == "resize":
            return resize_like_skimage(fused, height, width, self.resize), transition_trimap(semantic_255)
        _, detail, _ = self.forward(network, self.scaled(photo, DETAIL_DIVISOR), device, autocast)
        detail = resize_like_skimage(detail, height, width, self.resize)
        return fuse_resized(semantic_255, detail), transition_trimap(semantic_255)

    def run(self, network: nn.Module, image_rgb: torch.Tensor, trimap: Optional[torch.Tensor],
            autocast: Optional[Callable] = None) -> Tuple[torch.Tensor, Optional[Dict]]:
        """(alpha H x W in [0, 1], float64 (float32 from skimage-0.19's RESIZE), {"trimap": the trimap the fusion used, H x W uint8}); the
        trimap argument is not used."""
        photo = image_rgb.cpu().numpy()
        if photo.dtype != np.uint8:  # a 16-bit photo, read on the 0..255 scale: as an 8-bit one would be
            photo = np.multiply(photo, 1 / 255, dtype=np.float64)
        height, width = photo.shape[:2]
        limited = limit_shorter_side(photo, self.shorter_side)
        alpha, fusion_trimap = self.predict(network, limited, image_rgb.device, autocast or contextlib.nullcontext)
        if limited.shape != photo.shape:
            alpha = cv2.resize(alpha * 255.0, (width, height), interpolation=cv2.INTER_LINEAR) / 255
            fusion_trimap = cv2.resize(fusion_trimap, (width, height), interpolation=cv2.INTER_NEAREST)
        alpha = torch.from_numpy(np.ascontiguousarray(alpha)).clamp(0, 1)
        return alpha, {"trimap": torch.from_numpy(fusion_trimap)}
