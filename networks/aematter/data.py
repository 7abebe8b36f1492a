"""AEMatter's training data pipeline, written for this project from the description of its
dataset.py (GPL-2.0; not copied), as a dataloader.datasets.SampleFunction: every draw comes from
the sample's own generator (so samples repeat for a seed and do not depend on the worker).

1. Upscaling: a foreground whose longer side is under 1500 px is enlarged by 1.5 or 2 (p = 0.4).
2. Mixing (p = 0.5) with another foreground, one of three ways: centred (the second resized to
   3/4 .. 1 of the size), or side by side with a shift of a few % of the width to the left or the
   right; the first over the second, the alphas combined as 1 - (1 - a1)(1 - a2).
3. The background fitted to the foreground: resized to its size or scaled to cover it (p = 0.1),
   else 1.1 times larger, centre-cropped.
4. RandomAffine: rotation +-30 deg (images of 1024 px or more), scale 0.8 .. 1.25 per axis, shear
   +-10 deg, horizontal and vertical flips (p = 0.5 each); the background is not warped.
5. A trimap by erosion / dilation of the alpha (elliptical kernels of 1 .. 29 px; 10 .. 39 with
   p = 0.01), to choose the crop: the foreground reflected to the crop size when smaller (or
   resized up, p = 0.1), reflected by 32 px more on every side (p = 0.4), cropped around an
   unknown pixel of the 1/4-resolution trimap (anywhere when it has fewer than 10).
6. Colour jitter: 0 .. 5 of gamma, brightness, hue and saturation, gain and contrast changes in a
   random order, strong on the foreground and slight on the background.
7. Blur of the foreground and its alpha (5 x 5 Gaussian, sigma up to 2, p = 0.05).
8. The trimap made again, the same way, from the crop's alpha; the image composited in floats.

Interpolations are drawn among nearest, bilinear, bicubic (and Lanczos for the scaling and the
warp). Where the published code does something only a file of the other kind shows (its second
background, never used by the loss), it is left out. A photo over its own background takes the
geometric steps with its background and skips the mixing and the colour jitter, so that its
image stays the photo."""
from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from dataloader.datasets import SampleSource
from dataloader.transforms import composite, inverse_affine_matrix

RESIZES = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
WARPS = RESIZES + (cv2.INTER_LANCZOS4,)
UPSCALE_BELOW, UPSCALE_PROB, UPSCALE_FACTORS = 1500, 0.4, (2.0, 1.5)
MIX_PROB = 0.5
EXACT_FIT_PROB, COVER_MARGIN = 0.1, 1.1
AFFINE_DEGREES, AFFINE_SCALE, AFFINE_SHEAR, AFFINE_FLIP, ROTATION_MIN_SIDE = 30, (0.8, 1.25), 10, 0.5, 1024
KERNEL_SIZES, WIDE_KERNEL_SIZES, WIDE_KERNEL_PROB = (1, 30), (10, 40), 0.01
RESIZE_UP_PROB, BORDER_PROB, BORDER = 0.1, 0.4, 32
MIN_UNKNOWN_FOR_CENTRED_CROP = 10
BLUR_PROB, BLUR_SIGMA, BLUR_SIZE = 0.05, 2.0, 5
# (gamma, additive, hue / saturation, gain, contrast) ranges for the foreground and the background.
FOREGROUND_JITTER = ((0.9, 1.2), 10, 30, (0.8, 1.25), (0.8, 1.25))
BACKGROUND_JITTER = ((0.9, 1.1), 3, 3, (0.95, 1.05), (0.9, 1.1))
PER_CHANNEL_PROB = 0.5
UNKNOWN = 128


def random_choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def upscale(fg: np.ndarray, alpha: np.ndarray, own_bg: Optional[np.ndarray], rng: np.random.Generator):
    """Step 1, for foregrounds whose longer side is under 1500 px."""
    if max(alpha.shape) >= UPSCALE_BELOW or rng.random() >= UPSCALE_PROB:
        return fg, alpha, own_bg
    factor, interpolation = random_choice(rng, UPSCALE_FACTORS), random_choice(rng, WARPS)
    scale = lambda image: cv2.resize(image, (0, 0), fx=factor, fy=factor, interpolation=interpolation)
    return scale(fg), scale(alpha), None if own_bg is None else scale(own_bg)


def mix_layout(shape: Tuple[int, int], rng: np.random.Generator) -> Tuple[str, Tuple[int, int], Tuple[int, int, int, int], int]:
    """How the second foreground is placed: (way, its size (w, h) before padding, its padding
    (top, bottom, left, right), the first one's padding to the left (+) or right (-))."""
    height, width = shape
    way = random_choice(rng, ("centred", "left", "right"))
    if way == "right":
        shift = 2 * int(rng.integers(2, max(width // 16, 2) + 1))
        return way, (width, height), (0, 0, shift, 0), -shift
    size = (int(rng.integers(width * 3 // 4, width + 1)), int(rng.integers(height * 3 // 4, height + 1)))
    left, top = (width - size[0]) // 2, (height - size[1]) // 2
    padding = (top, height - size[1] - top, left, width - size[0] - left)
    if way == "centred":
        return way, size, padding, 0
    shift = 2 * int(rng.integers(2, width // 16 + 3))
    return way, size, padding[:3] + (padding[3] + shift,), shift


def mix(fg: np.ndarray, alpha: np.ndarray, read_foreground: Callable[[int], Tuple[np.ndarray, np.ndarray]],
        count: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Step 2: the foreground over another one (uint8 fg and alpha in, and out)."""
    fg2, alpha2 = read_foreground(int(rng.integers(count)))
    way, size, padding, shift = mix_layout(alpha.shape, rng)
    interpolation = random_choice(rng, RESIZES)
    fg2 = cv2.copyMakeBorder(cv2.resize(fg2, size, interpolation=interpolation), *padding, cv2.BORDER_CONSTANT)
    alpha2 = cv2.copyMakeBorder(cv2.resize(alpha2, size, interpolation=interpolation), *padding, cv2.BORDER_CONSTANT)
    first_alpha = alpha.astype(np.float32) / 255
    if shift:
        side = (0, 0, shift, 0) if shift > 0 else (0, 0, 0, -shift)
        fg, first_alpha = (cv2.copyMakeBorder(image, *side, cv2.BORDER_CONSTANT) for image in (fg, first_alpha))
    combined = 1 - (1 - first_alpha) * (1 - alpha2.astype(np.float32) / 255)
    mixed_fg, mixed_alpha = fg, first_alpha
    if np.any(combined < 1):
        mixed_fg = np.clip(fg.astype(np.float32) * first_alpha[:, :, None]
                           + fg2.astype(np.float32) * (1 - first_alpha[:, :, None]), 0, 255)
        mixed_alpha = combined
    if shift:
        start = abs(shift) // 2
        mixed_fg, mixed_alpha = mixed_fg[:, start:start + alpha.shape[1]], mixed_alpha[:, start:start + alpha.shape[1]]
    return mixed_fg.astype(np.uint8), (np.clip(mixed_alpha, 0, 1) * 255).astype(np.uint8)


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top:top + height, left:left + width]


def fit_background(bg: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Step 3: the background at the foreground's size."""
    interpolation = random_choice(rng, RESIZES)
    exact, stretch = rng.random() < EXACT_FIT_PROB, rng.random() < 0.5
    margin = 1.0 if exact else COVER_MARGIN
    if exact and stretch:
        return cv2.resize(bg, (width, height), interpolation=interpolation)
    if stretch:
        size = (int(width * margin), int(height * margin))
    else:
        scale = margin * max(height / bg.shape[0], width / bg.shape[1])
        size = (int(np.ceil(bg.shape[1] * scale)), int(np.ceil(bg.shape[0] * scale)))
    size = (max(size[0], width), max(size[1], height))
    return centre_crop(cv2.resize(bg, size, interpolation=interpolation), height, width)


def random_affine(fg: np.ndarray, alpha: np.ndarray, own_bg: Optional[np.ndarray], rng: np.random.Generator):
    """Step 4 (no translation; the foreground's border replicated, the alpha's zero)."""
    rows, cols = alpha.shape
    angle = float(rng.uniform(-AFFINE_DEGREES, AFFINE_DEGREES))
    scale = (float(rng.uniform(*AFFINE_SCALE)), float(rng.uniform(*AFFINE_SCALE)))
    shear = float(rng.uniform(-AFFINE_SHEAR, AFFINE_SHEAR))
    flip = tuple(int(f) for f in np.where(rng.random(2) < AFFINE_FLIP, -1, 1))
    interpolation = random_choice(rng, WARPS)
    if max(rows, cols) < ROTATION_MIN_SIDE:
        angle = 0.0
    matrix = inverse_affine_matrix((cols * 0.5 + 0.5, rows * 0.5 + 0.5), angle, scale, shear, flip)
    flags = interpolation + cv2.WARP_INVERSE_MAP
    warp = lambda image, border: cv2.warpAffine(image, matrix, (cols, rows), flags=flags, borderMode=border)
    return (warp(fg, cv2.BORDER_REPLICATE), warp(alpha, cv2.BORDER_CONSTANT),
            None if own_bg is None else warp(own_bg, cv2.BORDER_REPLICATE))


def make_trimap(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 0 / 128 / 255: 255 where the alpha eroded by a random ellipse is still 255, 0 where it
    dilated by another is still 0."""
    sizes = WIDE_KERNEL_SIZES if rng.random() < WIDE_KERNEL_PROB else KERNEL_SIZES
    erosion, dilation = (cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
                         for size in rng.integers(*sizes, size=2))
    trimap = np.full(alpha.shape, UNKNOWN, np.uint8)
    trimap[cv2.erode(alpha, erosion) >= 255] = 255
    trimap[cv2.dilate(alpha, dilation) <= 0] = 0
    return trimap


def grow_to_crop(layers: Dict[str, np.ndarray], crop: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """The layers brought to at least crop x crop: resized up (p = 0.1) or reflected on one side of
    each axis; then, with p = 0.4, reflected by 32 px on every side."""
    height, width = layers["alpha"].shape
    ratio = max(crop / height, crop / width)
    if ratio > 1:
        new_height, new_width = max(int(height * ratio), crop), max(int(width * ratio), crop)
        if rng.random() < RESIZE_UP_PROB:
            interpolation = random_choice(rng, RESIZES)
            layers = {name: cv2.resize(layer, (new_width, new_height), interpolation=cv2.INTER_NEAREST
                                       if name == "trimap" else interpolation) for name, layer in layers.items()}
        else:
            rows, columns = new_height - height, new_width - width
            top, left = rng.random() < 0.5, rng.random() < 0.5
            padding = (rows if top else 0, 0 if top else rows, columns if left else 0, 0 if left else columns)
            layers = {name: cv2.copyMakeBorder(layer, *padding, cv2.BORDER_REFLECT) for name, layer in layers.items()}
    if rng.random() < BORDER_PROB:
        layers = {name: cv2.copyMakeBorder(layer, *(BORDER,) * 4, cv2.BORDER_REFLECT) for name, layer in layers.items()}
    return layers


def crop_origin(trimap: np.ndarray, crop: int, rng: np.random.Generator) -> Tuple[int, int]:
    """The crop's top-left: an unknown pixel of the nearest 1/4-resolution trimap inside the crop / 2
    margin, made the crop's centre; anywhere when there are fewer than 10."""
    height, width = trimap.shape
    margin = crop // 2
    small = cv2.resize(trimap, (width // 4, height // 4), interpolation=cv2.INTER_NEAREST)
    candidates = np.argwhere(small[margin // 4:(height - margin) // 4, margin // 4:(width - margin) // 4] == UNKNOWN)
    if len(candidates) < MIN_UNKNOWN_FOR_CENTRED_CROP:
        return int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
    row, column = candidates[int(rng.integers(len(candidates)))]
    return int(row) * 4, int(column) * 4


def jitter(image: np.ndarray, ranges, rng: np.random.Generator) -> np.ndarray:
    """Step 6 on a BGR uint8 image: 0 .. 5 of the five changes, distinct, in a random order, each
    clipped to 0..255 and rounded; gain, brightness and contrast per channel with p = 0.5."""
    gamma, additive, hue_saturation, gain, contrast = ranges
    chosen = rng.permutation(5)[:int(rng.integers(0, 6))]
    image = image.astype(np.float32)
    for change in chosen:
        per_channel = rng.random() < PER_CHANNEL_PROB
        draws = 3 if per_channel else 1
        if change == 0:  # gamma, always per channel
            image = 255 * (image / 255) ** rng.uniform(*gamma, size=3)
        elif change == 1:
            image = image + np.round(rng.uniform(-additive, additive, size=draws))
        elif change == 2:
            image = shift_hue_saturation(np.clip(np.round(image), 0, 255).astype(np.uint8),
                                         int(rng.integers(-hue_saturation, hue_saturation + 1))).astype(np.float32)
        elif change == 3:
            image = image * rng.uniform(*gain, size=draws)
        else:
            image = 127.5 + (image - 127.5) * rng.uniform(*contrast, size=draws)
        image = np.clip(np.round(image), 0, 255)
    return image.astype(np.uint8)


def shift_hue_saturation(image: np.ndarray, value: int) -> np.ndarray:
    """`value` (of -255 .. 255) added to the hue as an angle (value / 255 x 180 in OpenCV's 0..180
    hue) and to the saturation (clipped)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int32)
    hsv[:, :, 0] = np.mod(hsv[:, :, 0] + int(round(value / 255 * 180)), 180)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] + value, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def blur(fg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Step 7."""
    if rng.random() >= BLUR_PROB:
        return fg, alpha
    sigma = rng.random() * BLUR_SIGMA + 1e-5
    size = (BLUR_SIZE, BLUR_SIZE)
    return cv2.GaussianBlur(fg, size, sigmaX=sigma), cv2.GaussianBlur(alpha, size, sigmaX=sigma)


def aematter_sample(source: SampleSource) -> Dict[str, np.ndarray]:
    """One training sample by AEMatter's pipeline (the module's steps; with data.augmentation off
    only 3, 5 and 8): image, fg, bg (BGR float 0..255), alpha (float32 0..1) and trimap (float32
    grey 0 / 128 / 255), crop_size x crop_size."""
    rng, fg, alpha, augment = source.rng, source.fg, source.alpha, source.augmentation
    own_bg = source.bg if source.own_background else None
    if augment:
        fg, alpha, own_bg = upscale(fg, alpha, own_bg, rng)
        if own_bg is None and rng.random() < MIX_PROB:
            fg, alpha = mix(fg, alpha, source.read_foreground, source.count, rng)
    bg = own_bg if own_bg is not None else fit_background(source.bg, *alpha.shape, rng)
    if augment:
        fg, alpha, warped_bg = random_affine(fg, alpha, own_bg, rng)
        bg = bg if warped_bg is None else warped_bg
    layers = grow_to_crop({"fg": fg, "alpha": alpha, "trimap": make_trimap(alpha, rng), "bg": bg},
                          source.crop_size, rng)
    top, left = crop_origin(layers["trimap"], source.crop_size, rng)
    window = (slice(top, top + source.crop_size), slice(left, left + source.crop_size))
    fg, alpha, bg = (np.ascontiguousarray(layers[name][window]) for name in ("fg", "alpha", "bg"))
    if augment and own_bg is None:
        fg = jitter(fg, FOREGROUND_JITTER, rng)
        bg = jitter(bg.astype(np.uint8), BACKGROUND_JITTER, rng)
    if augment:
        fg, alpha = blur(fg, alpha, rng)
    trimap = make_trimap(alpha, rng)
    image, fg, bg, alpha = composite(fg.astype(np.float32), bg.astype(np.float32), alpha.astype(np.float32) / 255)
    return {"image": image, "fg": fg, "bg": bg, "alpha": alpha, "trimap": trimap.astype(np.float32)}
