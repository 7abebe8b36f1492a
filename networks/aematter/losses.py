"""AEMatter's training losses, written for this project from the description of its train.py and
laploss.py (GPL-2.0; not copied): the prediction is kept in the trimap's unknown region and the
known regions are taken from the trimap; then 0.5 x the L1 over the whole alpha, 0.5 x the
Charbonnier loss on the unknown region normalised per image by its unknown pixels + 5, and
0.5 x the Laplacian-pyramid loss (5 levels of a 5 x 5 Gaussian of sigma 1.5 with mirrored
borders, level k weighted 2^k)."""
from typing import Dict

import torch

from networks.training import laplacian_pyramid

LOSS_WEIGHT = 0.5  # each of the three
# Inside the square root: (difference)^2 + CHARBONNIER_EPS^2.
CHARBONNIER_EPS = 1e-6
# Added to each image's unknown count, so that an image without unknown pixels divides by 5.
UNKNOWN_COUNT_OFFSET = 5
PYRAMID_LEVELS, GAUSSIAN_SIZE, GAUSSIAN_SIGMA, LEVEL_FACTOR = 5, 5, 1.5, 2.0
# The smallest crop whose pyramid's last level is still wider than the blur's mirrored border.
MIN_CROP = 64


def composed_alpha(prediction: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """The network's alpha where the one-hot trimap (N x 3 x H x W: background, unknown,
    foreground) is unknown, 1 where it is foreground, 0 where it is background."""
    return prediction * trimap[:, 1:2] + trimap[:, 2:3]


def gaussian_kernel(size: int = GAUSSIAN_SIZE, sigma: float = GAUSSIAN_SIGMA) -> torch.Tensor:
    """size x size: the outer product of a normalised 1-D Gaussian sampled at -size//2 .. size//2."""
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    line = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    line = line / line.sum()
    return line[:, None] * line[None, :]


def laplacian_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum over the 5 band-pass levels k (mirrored borders without repeating the edge) of 2^k x
    the mean absolute difference of the two pyramids' band k, the prediction clamped to [0, 1]
    first."""
    kernel = gaussian_kernel()
    pairs = zip(laplacian_pyramid(prediction.clamp(0, 1), kernel, PYRAMID_LEVELS, "reflect")[:-1],
                laplacian_pyramid(target, kernel, PYRAMID_LEVELS, "reflect")[:-1])
    return sum(LEVEL_FACTOR ** level * (a - b).abs().mean() for level, (a, b) in enumerate(pairs))


def unknown_charbonnier(prediction: torch.Tensor, target: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """The mean over the images of sum(sqrt((d u)^2 + eps^2)) / (sum(u) + 5), d the difference and
    u the unknown mask (N x 1 x H x W): every pixel adds at least eps, as published."""
    difference = (prediction - target) * unknown
    per_image = torch.sqrt(difference ** 2 + CHARBONNIER_EPS ** 2).sum(dim=(1, 2, 3))
    return (per_image / (unknown.sum(dim=(1, 2, 3)) + UNKNOWN_COUNT_OFFSET)).mean()


def aematter_losses(prediction: torch.Tensor, target: torch.Tensor, trimap: torch.Tensor) -> Dict[str, torch.Tensor]:
    """AEMatter's losses, each with its weight, and "total", their sum. prediction: the network's
    alpha; target: the true alpha; trimap: the one-hot trimap the network was given."""
    alpha = composed_alpha(prediction, trimap)
    losses = {"l1": LOSS_WEIGHT * (alpha - target).abs().mean(),
              "unknown": LOSS_WEIGHT * unknown_charbonnier(alpha, target, trimap[:, 1:2]),
              "laplacian": LOSS_WEIGHT * laplacian_loss(alpha, target)}
    losses["total"] = sum(losses.values())
    return losses
