"""MMagic's reimplementation of the GCA attention: each key patch's norm summed in one reduction,
the self-match penalty scaled by the unknown fraction of the key's 3 x 3 mask patch (GCA-Matting
applies all of it to a key with any unknown pixel), and its literal form in MMagic's layouts."""
from typing import Tuple

import torch
import torch.nn.functional as F

from networks.gca_matting.gca import RATE, SELF_MATCH_PENALTY, AttentionVariant, patch_padding, score_propagate


def joint_key_norms(patches: torch.Tensor) -> torch.Tensor:
    """L2 norm of each L x C x k x k patch in one sum over (C, k, k): L x 1 x 1 x 1."""
    return (patches ** 2).sum(dim=[1, 2, 3], keepdim=True).sqrt()


def mmagic_key_norms(patches: torch.Tensor) -> torch.Tensor:
    """joint_key_norms of L x C x 3 x 3 patches laid out as MMagic's unfold lays them (L innermost),
    so that the sum rounds as its code's does, whatever the layout given."""
    return joint_key_norms(patches.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2))


def fraction_penalty(fractions: torch.Tensor) -> torch.Tensor:
    """The self-match penalty of each key times the unknown fraction of its 3 x 3 mask patch."""
    return torch.full_like(fractions, SELF_MATCH_PENALTY) * fractions


def mmagic_patches(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """N x L x C x k x k patches laid out as MMagic lays them (a view of F.unfold's output)."""
    x = F.pad(x, patch_padding(kernel, stride), mode="reflect")
    columns = F.unfold(x, (kernel, kernel), stride=(stride, stride))
    return columns.permute(0, 2, 1).reshape(x.shape[0], -1, x.shape[1], kernel, kernel)


def attend_literal_mmagic(guidance: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor,
                          scales: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """MMagic's attention as its code computes it, operation by operation and in its layouts.
    Arguments and result as networks.gca_matting.gca.attend_literal_published's."""
    fractions = mmagic_patches(unknown, 3, 1).squeeze(dim=2).mean(dim=[2, 3], keepdim=True)
    return score_propagate(guidance, mmagic_patches(guidance, 3, 1), mmagic_patches(alpha, 2 * RATE, RATE),
                           fractions, scales, joint_key_norms, channels_last_scores=False)


MMAGIC = AttentionVariant("mmagic", mmagic_key_norms, fraction_penalty, attend_literal_mmagic)
