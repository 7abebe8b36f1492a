"""ViTMatte's training criterion (modeling/criterion/matting_criterion.py, MattingCriterion with
the four losses configs/common/model.py names), written for this project: the L1 on the unknown
region, the L1 on the known region, the Laplacian-pyramid L1 and the gradient penalty, summed with
weight 1 each. The unknown region is where the training trimap is 0.5.

The published losses are means over the batch's pixels scaled by N x 512^2 / (the region's pixel
count): the region's mean, times 512^2 / (H x W), which is 1 at the published 512-pixel crops.
Written here as the region's sum over its count (networks.training.unknown_l1) times that factor;
a batch without pixels of a region gets 0 for its losses (the published unknown-region losses
divide by zero there)."""
from typing import Dict

import torch
import torch.nn.functional as F

from networks.training import unknown_l1

PUBLISHED_CROP_PIXELS = 512 * 512
UNKNOWN = 0.5
LAPLACIAN_LEVELS = 5
GRADIENT_PENALTY = 0.01  # the weight of the predicted gradients' own L1 in the gradient penalty
# The 5 x 5 binomial kernel of the Laplacian pyramid, the outer product of 1 4 6 4 1 / 16.
BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def crop_scale(pred: torch.Tensor) -> float:
    """512^2 / (H x W): the published losses' scale relative to the region's mean."""
    return PUBLISHED_CROP_PIXELS / (pred.shape[2] * pred.shape[3])


def unknown_l1_loss(pred: torch.Tensor, target: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    return unknown_l1(pred, target, unknown) * crop_scale(pred)


def known_l1_loss(pred: torch.Tensor, target: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    return unknown_l1(pred, target, 1 - unknown) * crop_scale(pred)


def _gaussian_blur(image: torch.Tensor) -> torch.Tensor:
    """The binomial 5 x 5 blur of each channel, edges reflected."""
    kernel = (BINOMIAL[:, None] * BINOMIAL[None, :]).to(image)[None, None]
    batch, channels, height, width = image.shape
    blurred = F.conv2d(F.pad(image.reshape(batch * channels, 1, height, width), (2, 2, 2, 2), mode="reflect"), kernel)
    return blurred.reshape(batch, channels, height, width)


def laplacian_pyramid(image: torch.Tensor, levels: int = LAPLACIAN_LEVELS):
    """Each level: the image (cropped to even sides) minus the upsampled blur-and-halve of it
    (zeros between the halved pixels, x 4, blurred); the next level works on the halved one."""
    pyramid = []
    for _ in range(levels):
        image = image[:, :, :image.shape[2] // 2 * 2, :image.shape[3] // 2 * 2]
        halved = _gaussian_blur(image)[:, :, ::2, ::2]
        spread = torch.zeros_like(image)
        spread[:, :, ::2, ::2] = halved * 4
        pyramid.append(image - _gaussian_blur(spread))
        image = halved
    return pyramid


def laplacian_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = LAPLACIAN_LEVELS) -> torch.Tensor:
    """sum over levels i of 2^i mean |L_i(pred) - L_i(target)|, divided by the number of levels."""
    pairs = zip(laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels))
    return sum((2 ** level) * F.l1_loss(ours, theirs) for level, (ours, theirs) in enumerate(pairs)) / levels


def sobel(image: torch.Tensor) -> torch.Tensor:
    """N x 2 x H x W: the Sobel x and y derivatives (zero padding), each the outer product of the
    smoothing 1 2 1 and the difference -1 0 1."""
    smooth, difference = torch.tensor([1.0, 2.0, 1.0]), torch.tensor([-1.0, 0.0, 1.0])
    kernels = torch.stack([smooth[:, None] * difference[None, :], difference[:, None] * smooth[None, :]])
    return F.conv2d(image, kernels[:, None].to(image), padding=1)


def gradient_penalty(pred: torch.Tensor, target: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """On the unknown region: the L1 between the Sobel derivatives of prediction and truth, plus
    0.01 x the L1 of the prediction's own, x and y each."""
    ours, theirs = sobel(pred), sobel(target)  # the one-channel region weighs both derivatives
    return (unknown_l1(ours, theirs, unknown) + GRADIENT_PENALTY * unknown_l1(ours, torch.zeros_like(ours), unknown)) \
        * crop_scale(pred)


def vitmatte_losses(pred: torch.Tensor, target: torch.Tensor, trimap: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The four losses of a batch (alpha N x 1 x H x W, its truth, the training trimap 0 / 0.5 /
    1) and their sum, "total"."""
    unknown = (trimap == UNKNOWN).to(pred.dtype)
    losses = {"unknown_l1": unknown_l1_loss(pred, target, unknown), "known_l1": known_l1_loss(pred, target, unknown),
              "laplacian": laplacian_loss(pred, target), "gradient_penalty": gradient_penalty(pred, target, unknown)}
    losses["total"] = sum(losses.values())
    return losses
