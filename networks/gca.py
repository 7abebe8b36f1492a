"""Guided Contextual Attention (GCA), the module the method is named after."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

SELF_MATCH_PENALTY = -1e4
KEY_NORM_FLOOR = 1e-4


def extract_patches(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Reflect-pad by 1 and cut ``kernel`` x ``kernel`` patches: N x C x H x W -> N x L x C x k x k,
    L row-major over the patch grid."""
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    patches = x.unfold(2, kernel, stride).unfold(3, kernel, stride)
    n, c, ph, pw = patches.shape[:4]
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(n, ph * pw, c, kernel, kernel)


def l2_norm_patches(patches: torch.Tensor) -> torch.Tensor:
    """L2 norm of each L x C x k x k patch, summed k, k, C in turn as the published code does."""
    return (patches ** 2).sum(dim=3, keepdim=True).sum(dim=2, keepdim=True).sum(dim=1, keepdim=True).sqrt()


def softmax_scales(unknown: torch.Tensor) -> torch.Tensor:
    """Per image (unknown_scale, known_scale) = clamp(sqrt(p/q)), clamp(sqrt(q/p)), p the unknown
    fraction of the 1/16 mask: N x 1 x h x w -> N x 2."""
    unknown_mean = unknown.mean(dim=[2, 3])
    known_mean = 1 - unknown_mean
    unknown_scale = torch.clamp(torch.sqrt(unknown_mean / known_mean), 0.1, 10)
    known_scale = torch.clamp(torch.sqrt(known_mean / unknown_mean), 0.1, 10)
    return torch.cat([unknown_scale, known_scale], dim=1)


def attend_one_image(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     unknown_keys: torch.Tensor, scale: torch.Tensor,
                     rate: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Attention for one image in the literal form: an L x h x w score volume.

    query: 1 x C x h x w guidance features; keys: L x C x 3 x 3; values: L x C' x 2r x 2r;
    unknown_keys: L bools; scale: (unknown_scale, known_scale).
    Returns the propagated features 1 x C' x rh x rw and the argmax key index 1 x h x w.
    """
    h, w = query.shape[2:]
    keys = keys / torch.max(l2_norm_patches(keys), keys.new_tensor([KEY_NORM_FLOOR]))
    scores = F.conv2d(F.pad(query, (1, 1, 1, 1), mode="reflect"), keys)
    row_scale = torch.where(unknown_keys, scale[0], scale[1]).view(1, -1, 1, 1)
    scores = scores * row_scale
    self_match = scores.view(-1, h * w).diagonal()
    self_match.add_(torch.where(unknown_keys, SELF_MATCH_PENALTY, 0.0).to(scores.dtype))
    attention = F.softmax(scores, dim=1)
    _, best_key = torch.max(attention, dim=1)
    out = F.conv_transpose2d(attention, values, stride=rate, padding=1) / 4.
    return out, best_key


class GuidedCxtAtten(nn.Module):
    """Propagates alpha features from keys to queries by the affinity of guidance features.

    forward(guidance, alpha_features, unknown) with all three at 1/8 of the input returns
    ``W(y) + alpha_features`` and ``(offsets N x 2 x h x w int64, scales N x 2)``, h x w = 1/16.
    """

    def __init__(self, out_channels: int = 128, guidance_channels: int = 128, rate: int = 2):
        super().__init__()
        self.rate = rate
        self.guidance_conv = nn.Conv2d(guidance_channels, guidance_channels // 2, kernel_size=1)
        self.W = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        nn.init.xavier_uniform_(self.guidance_conv.weight)
        nn.init.constant_(self.guidance_conv.bias, 0)
        nn.init.xavier_uniform_(self.W[0].weight)
        nn.init.constant_(self.W[1].weight, 1e-3)
        nn.init.constant_(self.W[1].bias, 0)

    def forward(self, guidance: torch.Tensor, alpha: torch.Tensor,
                unknown: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        guidance = self.guidance_conv(guidance)
        values = extract_patches(alpha, kernel=2 * self.rate, stride=self.rate)
        guidance = F.interpolate(guidance, scale_factor=1 / self.rate, mode="nearest")
        keys = extract_patches(guidance, kernel=3, stride=1)
        unknown = F.interpolate(unknown, scale_factor=1 / self.rate, mode="nearest")
        if unknown.shape[2:] != guidance.shape[2:]:
            raise ValueError(f"GCA: unknown mask {tuple(unknown.shape[2:])} and guidance "
                             f"{tuple(guidance.shape[2:])} differ at 1/16; the input size must be a multiple of 32")
        scales = softmax_scales(unknown).to(alpha)
        unknown_keys = extract_patches(unknown, kernel=3, stride=1).mean(dim=[2, 3, 4]) > 0

        outs, best_keys = [], []
        for i in range(alpha.shape[0]):
            out, best_key = attend_one_image(guidance[i:i + 1], keys[i], values[i],
                                             unknown_keys[i], scales[i], self.rate)
            outs.append(out)
            best_keys.append(best_key)
        y = torch.cat(outs, dim=0)
        offsets = self.offsets_from_indices(torch.cat(best_keys, dim=0), guidance.shape[3])
        return self.W(y) + alpha, (offsets, scales)

    @staticmethod
    def offsets_from_indices(best_key: torch.Tensor, width: int) -> torch.Tensor:
        """Key index N x h x w -> (row, col) of the key minus the grid centre, N x 2 x h x w."""
        h = best_key.shape[1]
        position = torch.stack([best_key // width, best_key % width], dim=1)
        centre = torch.tensor([h // 2, width // 2], device=best_key.device).view(1, 2, 1, 1)
        return position - centre
