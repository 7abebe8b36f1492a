"""AIM's training losses (core/evaluate.py, JizhiziLi/AIM, MIT), on the three outputs of AimNet:
the semantic map (3 classes through a sigmoid), the detail decoder's alpha and their fusion.

The transfer stage (salient objects, DUTS's layout) sums the cross-entropy of the semantic map
against the trimap, the Charbonnier loss of the detail alpha on the trimap's transition and that of
the fused alpha on the whole image. The matting stage takes the unified semantic representation
(`usr`) for the trimap and adds the Laplacian losses of the detail alpha (on the transition) and of
the fused alpha, and the composition loss of the fused alpha. As published: the cross-entropy takes
the sigmoid map as its logits; the trimap and usr are grey maps on 0..255 after bilinear resizing,
so only their exact 128 counts as the transition, while the class of a resized grey is 2 at 255,
1 above 2, and the grey itself truncated below (1 and 2 included); the Charbonnier terms add
1e-12 under the root for every pixel, the transition's included or not; the Laplacian pyramid's
kernel is the normalised sum (not the product) of two squared 1-D Gaussians of sigma 1."""
from typing import Dict

import torch
import torch.nn.functional as F

from networks.training import laplacian_pyramid

CHARBONNIER_EPS2 = 1e-12
TRANSITION_GREY, FOREGROUND_GREY = 128, 255
PYRAMID_LEVELS, KERNEL_SIZE, KERNEL_SIGMA = 5, 5, 1.0


def semantic_classes(trimap: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W grey (0..255) -> N x H x W int64: 255 is class 2, other greys above 2 class 1,
    the rest their value truncated."""
    classes = torch.where(trimap == FOREGROUND_GREY, 2.0, trimap)
    return torch.where(classes > 2, 1.0, classes).long()[:, 0]


def transition(trimap: torch.Tensor) -> torch.Tensor:
    return (trimap == TRANSITION_GREY).to(trimap.dtype)


def semantic_loss(semantic: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of the sigmoid map (taken as logits) against the trimap's classes."""
    return F.cross_entropy(semantic, semantic_classes(trimap))


def charbonnier_sum(difference: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(difference ** 2 + CHARBONNIER_EPS2).sum()


def transition_alpha_loss(prediction: torch.Tensor, alpha: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """sum(sqrt(((p - a) w)^2 + 1e-12)) / (sum(w) + 1), w the trimap's transition, a on 0..1."""
    weight = transition(trimap)
    return charbonnier_sum((prediction - alpha) * weight) / (weight.sum() + 1)


def whole_alpha_loss(prediction: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The mean of sqrt((p - a)^2 + 1e-12) over every pixel."""
    return charbonnier_sum(prediction - alpha) / alpha.numel()


def pyramid_kernel(size: int = KERNEL_SIZE, sigma: float = KERNEL_SIGMA) -> torch.Tensor:
    """size x size: g(row) + g(column) normalised, g(x) = exp(-(x - size // 2)^2 / (2 sigma^2))^2."""
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    line = torch.exp(-offsets ** 2 / (2 * sigma ** 2)) ** 2
    kernel = line[:, None] + line[None, :]
    return kernel / kernel.sum()


def laplacian_loss(prediction: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The sum over the pyramids' levels (5 band-pass levels, the border replicated, and the last
    blur halved) of the mean absolute difference."""
    kernel = pyramid_kernel()
    pyramids = (laplacian_pyramid(image, kernel, PYRAMID_LEVELS, "replicate") for image in (alpha, prediction))
    return sum((a - b).abs().mean() for a, b in zip(*pyramids))


def composition_loss(image: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """Charbonnier of p fg + (1 - p) bg against the image, all three ImageNet-normalised, summed
    over the colours and divided by the alpha's pixels."""
    composite = prediction * fg + (1 - prediction) * bg
    return charbonnier_sum(composite - image) / prediction.numel()


def transfer_losses(semantic: torch.Tensor, detail: torch.Tensor, fused: torch.Tensor,
                    batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The transfer stage's losses and "total": batch "alpha" (the mask on 0..1), "trimap"."""
    trimap, alpha = batch["trimap"], batch["alpha"]
    losses = {"global": semantic_loss(semantic, trimap), "local": transition_alpha_loss(detail, alpha, trimap),
              "fusion": whole_alpha_loss(fused, alpha)}
    losses["total"] = sum(losses.values())
    return losses


def matting_losses(semantic: torch.Tensor, detail: torch.Tensor, fused: torch.Tensor,
                   batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The matting stage's losses and "total": batch "alpha", "trimap" (the usr), and "image",
    "fg", "bg" ImageNet-normalised."""
    usr, alpha = batch["trimap"], batch["alpha"]
    weight = transition(usr)
    losses = {"global": semantic_loss(semantic, usr),
              "local": transition_alpha_loss(detail, alpha, usr),
              "local_laplacian": laplacian_loss(detail * weight, alpha * weight),
              "fusion": whole_alpha_loss(fused, alpha),
              "fusion_laplacian": laplacian_loss(fused, alpha),
              "composition": composition_loss(batch["image"], batch["fg"], batch["bg"], fused)}
    losses["total"] = sum(losses.values())
    return losses
