"""MMagic's DIM losses (the `dim_` and `mmagic_` functions), normalised as MMagic's loss wrapper
does: the mask expanded to the loss's channels, the sum divided by its sum + 1e-12."""
from typing import Dict, Optional

import torch

# MMagic's CharbonnierLoss / CharbonnierCompLoss epsilon (inside the root, on the unmasked
# difference) and its masked mean's (added to the mask's sum).
MMAGIC_CHARBONNIER_EPS = 1e-12
MMAGIC_MEAN_EPS = 1e-12
# MMagic's DIM configs: loss_alpha and loss_comp weigh 0.5 each, loss_refine 1.
DIM_ALPHA_WEIGHT, DIM_COMPOSITION_WEIGHT, DIM_REFINEMENT_WEIGHT = 0.5, 0.5, 1.0
# The unknown grey as DIM's trimap input holds it (MattorPreprocessor's rescale_to_zero_one).
DIM_UNKNOWN = 128 / 255


def mmagic_charbonnier(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise sqrt((pred - target)^2 + 1e-12)."""
    return torch.sqrt((pred - target) ** 2 + MMAGIC_CHARBONNIER_EPS)


def mmagic_masked_mean(loss: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """MMagic's masked mean (reduction "mean", not sample-wise): sum(loss w) over everything,
    divided by the sum of w expanded to the loss's channels, + 1e-12."""
    return (loss * weight).sum() / (weight.expand_as(loss).sum() + MMAGIC_MEAN_EPS)


def dim_unknown_weight(trimap: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W: 1 where DIM's trimap input (grey / 255) is the unknown 128 / 255, else 0."""
    return trimap.eq(DIM_UNKNOWN).float()


def dim_alpha_loss(alpha: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The Charbonnier alpha loss's masked mean (before its weight): DIM's alpha and refinement loss."""
    return mmagic_masked_mean(mmagic_charbonnier(alpha, target), weight)


def dim_composition_loss(alpha: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, merged: torch.Tensor,
                         weight: torch.Tensor) -> torch.Tensor:
    """The Charbonnier composition loss's masked mean: alpha fg + (1 - alpha) bg against the merged
    image, fg, bg and merged N x 3 x H x W on 0..1 (not normalised), the one-channel mask taken
    for each colour channel (so divided by 3 sum(w))."""
    composite = alpha * fg + (1. - alpha) * bg
    return mmagic_masked_mean(mmagic_charbonnier(composite, merged), weight.expand(-1, 3, -1, -1))


def dim_losses(alpha: torch.Tensor, refined: Optional[torch.Tensor], batch: Dict[str, torch.Tensor],
               train_backbone: bool, train_refiner: bool) -> Dict[str, torch.Tensor]:
    """MMagic's DIM losses, each with its weight, and 'total', their sum. alpha: the decoder's
    (the sigmoid of its output), refined: the refiner's (None without one); batch: "alpha" (the
    ground truth, 0..1), "fg", "bg", "merged" (RGB 0..1), "trimap" (the network's, grey / 255).
    train_backbone (stages 1 and 3): 0.5 alpha + 0.5 composition loss of `alpha`;
    train_refiner (stages 2 and 3): 1.0 refinement loss of `refined`. All on the unknown region."""
    weight = dim_unknown_weight(batch["trimap"])
    losses = {}
    if train_backbone:
        losses["alpha"] = DIM_ALPHA_WEIGHT * dim_alpha_loss(alpha, batch["alpha"], weight)
        losses["comp"] = DIM_COMPOSITION_WEIGHT * dim_composition_loss(alpha, batch["fg"], batch["bg"],
                                                                       batch["merged"], weight)
    if train_refiner:
        if refined is None:
            raise ValueError("DIM's refinement loss needs the refiner's alpha; the network has no refiner")
        losses["refine"] = DIM_REFINEMENT_WEIGHT * dim_alpha_loss(refined, batch["alpha"], weight)
    if not losses:
        raise ValueError("DIM trains the encoder-decoder, the refiner or both; neither was chosen")
    losses["total"] = sum(losses.values())
    return losses
