"""MMagic's reimplementation of the GCA attention: each key patch's norm summed in one reduction,
the self-match penalty scaled by the unknown fraction of the key's 3 x 3 mask patch (GCA-Matting
applies all of it to a key with any unknown pixel), and its literal form in MMagic's layouts."""
from typing import Tuple

import torch
import torch.nn.functional as F

from networks.gca import (KEY_NORM_FLOOR, RATE, SELF_MATCH_PENALTY, AttentionVariant, patch_padding, scaled_by_key,
                          self_match_mask)


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
    Arguments and result as networks.gca.attend_literal_published's."""
    h, w = guidance.shape[2:]
    values = mmagic_patches(alpha, 2 * RATE, RATE)
    keys = mmagic_patches(guidance, 3, 1)
    fractions = mmagic_patches(unknown, 3, 1).squeeze(dim=2).mean(dim=[2, 3], keepdim=True)
    self_mask = self_match_mask(h, w).to(guidance)
    floor = torch.tensor([KEY_NORM_FLOOR]).to(guidance)
    outs, best_keys = [], []
    for i in range(guidance.shape[0]):
        normed = keys[i] / torch.max(joint_key_norms(keys[i]), floor)
        scores = F.conv2d(F.pad(guidance[i:i + 1], (1, 1, 1, 1), mode="reflect"), normed)
        scores = scaled_by_key(scores, fractions[i:i + 1], scales[i]) + self_mask * fractions[i:i + 1]
        attention = F.softmax(scores, dim=1)
        best_keys.append(torch.max(attention, dim=1)[1])
        outs.append(F.conv_transpose2d(attention, values[i], stride=RATE, padding=1) / 4.)
    return torch.cat(outs), torch.cat(best_keys)


MMAGIC = AttentionVariant("mmagic", mmagic_key_norms, fraction_penalty, attend_literal_mmagic)
