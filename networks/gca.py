"""Guided Contextual Attention (GCA), the module the method is named after.

The published form scores every key against every query at once: an L x L volume (L = the
number of 16 x 16 patches), whose memory grows with the square of the image area (a 4K image
needs tens of GB). `attend_blocked` computes the same attention for a block of queries at a
time, softmax over all keys per query and the propagated patches gathered and folded once, so
memory is O(L x block). `GuidedCxtAtten.block` chooses: LITERAL for the published form, AUTO
(the default) for the published form where its score volume fits the memory budget and blocks
elsewhere, or a number of queries per block.
"""
import os
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

SELF_MATCH_PENALTY = -1e4
KEY_NORM_FLOOR = 1e-4
LITERAL, AUTO = -1, 0
# Bytes of a score block (scores, their softmax and a temporary) allowed per GCA call.
DEFAULT_BUDGET_BYTES = 256 * 2 ** 20
FLOATS_PER_SCORE = 3


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


def attend_blocked(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   unknown_keys: torch.Tensor, scale: torch.Tensor, rate: int,
                   block: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """attend_one_image computed `block` queries at a time: the same scores (key patches dotted
    with the query's 3 x 3 neighbourhood), key scales, self-match penalty, softmax over all L
    keys and argmax; each query's propagated 2r x 2r patch is written as a column and the
    columns are folded (overlaps summed) as conv_transpose2d does. Blocks are laid out
    queries x keys, so the softmax and argmax run along contiguous rows."""
    h, w = query.shape[2:]
    length = h * w
    keys = keys / torch.max(l2_norm_patches(keys), keys.new_tensor([KEY_NORM_FLOOR]))
    key_matrix = keys.reshape(length, -1).t()
    queries = F.unfold(F.pad(query, (1, 1, 1, 1), mode="reflect"), kernel_size=3)[0].t()
    key_scale = torch.where(unknown_keys, scale[0], scale[1]).view(1, -1).to(key_matrix.dtype)
    penalty = torch.where(unknown_keys, SELF_MATCH_PENALTY, 0.0).to(key_matrix.dtype)
    value_matrix = values.reshape(length, -1)
    patches = value_matrix.new_empty(length, value_matrix.shape[1])
    best_key = torch.empty(length, dtype=torch.long, device=query.device)
    for start in range(0, length, block):
        stop = min(start + block, length)
        scores = (queries[start:stop] @ key_matrix) * key_scale
        own = torch.arange(start, stop, device=scores.device)
        scores[own - start, own] += penalty[start:stop]
        attention = F.softmax(scores, dim=1)
        best_key[start:stop] = torch.max(attention, dim=1)[1]
        patches[start:stop] = attention @ value_matrix
    out = F.fold(patches.t()[None], (rate * h, rate * w), kernel_size=2 * rate, stride=rate, padding=1) / 4.
    return out, best_key.view(1, h, w)


def memory_budget(device: torch.device) -> int:
    """Bytes for one score block: DEFAULT_BUDGET_BYTES, less where free memory is short."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 8 * DEFAULT_BUDGET_BYTES
    return max(min(DEFAULT_BUDGET_BYTES, free // 8), 2 ** 20)


def choose_block(length: int, setting: int, device: torch.device) -> int:
    """Queries per block for L = `length` patches: LITERAL (-1) for the published L x L form;
    AUTO (0) for the literal form when its score volume fits the budget, else the largest
    block that does; a positive setting as given."""
    if setting > 0 or setting == LITERAL:
        return setting
    budget = memory_budget(device)
    if length * length * 4 * FLOATS_PER_SCORE <= budget:
        return LITERAL
    return max(1, budget // (length * 4 * FLOATS_PER_SCORE))


class GuidedCxtAtten(nn.Module):
    """Propagates alpha features from keys to queries by the affinity of guidance features.

    forward(guidance, alpha_features, unknown) with all three at 1/8 of the input returns
    ``W(y) + alpha_features`` and ``(offsets N x 2 x h x w int64, scales N x 2)``, h x w = 1/16.
    """

    def __init__(self, out_channels: int = 128, guidance_channels: int = 128, rate: int = 2):
        super().__init__()
        self.rate = rate
        self.block = AUTO
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
        # The attention (scores, scales, softmax, propagation) stays in fp32 under autocast.
        with torch.autocast(alpha.device.type, enabled=False):
            y, offsets, scales = self.attend(guidance.float(), alpha.float(), unknown.float())
        return self.W(y.to(alpha.dtype)) + alpha, (offsets, scales)

    def attend(self, guidance: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor):
        values = extract_patches(alpha, kernel=2 * self.rate, stride=self.rate)
        guidance = F.interpolate(guidance, scale_factor=1 / self.rate, mode="nearest")
        keys = extract_patches(guidance, kernel=3, stride=1)
        unknown = F.interpolate(unknown, scale_factor=1 / self.rate, mode="nearest")
        if unknown.shape[2:] != guidance.shape[2:]:
            raise ValueError(f"GCA: unknown mask {tuple(unknown.shape[2:])} and guidance "
                             f"{tuple(guidance.shape[2:])} differ at 1/16; the input size must be a multiple of 32")
        scales = softmax_scales(unknown).to(alpha)
        unknown_keys = extract_patches(unknown, kernel=3, stride=1).mean(dim=[2, 3, 4]) > 0
        block = choose_block(guidance.shape[2] * guidance.shape[3], self.block, alpha.device)
        outs, best_keys = [], []
        for i in range(alpha.shape[0]):
            args = (guidance[i:i + 1], keys[i], values[i], unknown_keys[i], scales[i], self.rate)
            out, best_key = attend_one_image(*args) if block == LITERAL else attend_blocked(*args, block)
            outs.append(out)
            best_keys.append(best_key)
        offsets = self.offsets_from_indices(torch.cat(best_keys, dim=0), guidance.shape[3])
        return torch.cat(outs, dim=0), offsets, scales

    @staticmethod
    def offsets_from_indices(best_key: torch.Tensor, width: int) -> torch.Tensor:
        """Key index N x h x w -> (row, col) of the key minus the grid centre, N x 2 x h x w."""
        h = best_key.shape[1]
        position = torch.stack([best_key // width, best_key % width], dim=1)
        centre = torch.tensor([h // 2, width // 2], device=best_key.device).view(1, 2, 1, 1)
        return position - centre
