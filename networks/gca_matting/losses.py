"""GCA-Matting's training losses as published: w is the N x 1 x H x W unknown mask and each published
loss is divided by sum(w) + 1e-8 of that single-channel w. All but the reconstruction L1 are off by
default (weight 0); the Laplacian-pyramid loss is our addition, not a published one."""
from typing import Dict

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from networks.training import unknown_l1


def unknown_weight(trimap: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W mask of the unknown class, from a one-hot or a one-channel 0/1/2 trimap."""
    return trimap[:, 1:2] if trimap.shape[1] == 3 else trimap.eq(1).float()


def _per_unknown_pixel(total: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """total / (sum(w) + 1e-8), w the single-channel unknown mask."""
    return total / (weight.sum() + 1e-8)


# The published reconstruction loss is the L1 on the unknown region the trainer validates with.
regression_loss = unknown_l1


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(sqrt((pred w - target w)^2 + 1e-6)) / (sum(w) + 1e-8)."""
    return _per_unknown_pixel(torch.sqrt((pred * weight - target * weight) ** 2 + 1e-6).sum(), weight)


def composition_loss(alpha: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, image: torch.Tensor,
                     weight: torch.Tensor) -> torch.Tensor:
    """L1 between fg a + bg (1 - a) and the image (all in normalised space), summed over the
    3 colour channels and divided by sum(w) + 1e-8 of the one-channel mask."""
    return regression_loss(fg * alpha + bg * (1 - alpha), image, weight)


_SOBEL_Y = torch.tensor([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3)


def _sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """sqrt(gy^2 + gx^2 + 1e-8) of a one-channel image, same size (padding 1)."""
    kernels = torch.cat([_SOBEL_Y, _SOBEL_Y.transpose(2, 3)]).to(image)
    gradients = F.conv2d(image, kernels, padding=1)
    return torch.sqrt((gradients ** 2).sum(dim=1, keepdim=True) + 1e-8)


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(|m_pred w - m_gt w|) / (sum(w) + 1e-8), m the Sobel gradient magnitude."""
    return regression_loss(_sobel_magnitude(pred), _sobel_magnitude(target), weight)


def _gabor_bank() -> torch.Tensor:
    """16 x 1 x 5 x 5 float32 Gabor kernels (sigma 0.5, theta k pi / 8, lambda 5, gamma 0.5)."""
    # The published bank is built in float64 (getGaborKernel's default) and cast afterwards.
    kernels = [cv2.getGaborKernel((5, 5), 0.5, k * np.pi / 8, 5, 0.5).astype(np.float32) for k in range(16)]
    return torch.from_numpy(np.stack(kernels))[:, None]


_GABOR = _gabor_bank()


def gabor_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum((g_pred w - g_gt w)^2) / (sum(w) + 1e-8), summed over the 16 Gabor responses (padding 2)."""
    bank = _GABOR.to(pred)
    response_pred = F.conv2d(pred, bank, padding=2)
    response_target = F.conv2d(target, bank, padding=2)
    return _per_unknown_pixel(((response_pred * weight - response_target * weight) ** 2).sum(), weight)


def laplacian_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Laplacian-pyramid L1 (as MatteFormer / FBA add it): sum_i 2^i mean|L_i(pred) - L_i(target)|."""
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 256).view(1, 1, 5, 5).to(pred)
    loss = pred.new_zeros(())
    for level in range(levels):
        blurred_pred = F.conv2d(F.pad(pred, (2, 2, 2, 2), mode="reflect"), kernel)
        blurred_target = F.conv2d(F.pad(target, (2, 2, 2, 2), mode="reflect"), kernel)
        loss = loss + (2 ** level) * F.l1_loss(pred - blurred_pred, target - blurred_target)
        pred, target = blurred_pred[:, :, ::2, ::2], blurred_target[:, :, ::2, ::2]
        if min(pred.shape[2:]) < 5:
            break
    return loss


def matting_losses(alpha: torch.Tensor, batch: Dict[str, torch.Tensor], weights: Dict[str, float]) -> Dict[str, torch.Tensor]:
    """Each loss with a non-zero weight, plus 'total' = the weighted sum. `weights` uses the
    config's names: rec_weight, comp_weight, smooth_l1_weight, grad_weight, gabor_weight, lap_weight."""
    target, weight = batch["alpha"], unknown_weight(batch["trimap"])
    makers = {
        "rec": lambda: regression_loss(alpha, target, weight),
        "comp": lambda: composition_loss(alpha, batch["fg"], batch["bg"], batch["image"], weight),
        "smooth_l1": lambda: charbonnier_loss(alpha, target, weight),
        "grad": lambda: gradient_loss(alpha, target, weight),
        "gabor": lambda: gabor_loss(alpha, target, weight),
        "lap": lambda: laplacian_loss(alpha, target),
    }
    losses = {name: make() for name, make in makers.items() if weights.get(f"{name}_weight", 0)}
    losses["total"] = sum(weights[f"{name}_weight"] * value for name, value in losses.items())
    return losses
