"""Guided Contextual Attention (GCA), the module the method is named after.

The published form scores every key against every query at once: an L x L volume (L = the
number of 16 x 16 patches), whose memory grows with the square of the image area (a 4K image
needs tens of GB). `attend_blocked` computes the same attention a few rows of queries at a
time (softmax over all keys per query), so memory is O(L x block), with about a third of the
published form's products for the scores and a quarter for the propagation.
`GuidedCxtAtten.block` chooses: LITERAL for the published form (its code's operations in its
memory layouts, so that its float sums run in the same order), AUTO (the default) for blocks
sized to the memory budget, or a number of queries per block. `GuidedCxtAtten.variant` is
GCA-Matting's attention (PUBLISHED) or a reimplementation's (networks.mmagic.attention.MMAGIC).
"""
import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.ops import InPlaceBatchNorm2d
from networks.stripes import AUTO, memory_budget

SELF_MATCH_PENALTY = -1e4
KEY_NORM_FLOOR = 1e-4
# GuidedCxtAtten.block: the published L x L form (AUTO: blocks sized to the memory budget).
LITERAL = -1
# Bytes of a block's buffers allowed per GCA call. Larger blocks run faster (fewer products per
# score, larger matrix products): a 3840x2160 module took 20.1, 16.3, 14.5 and 13.0 s with 1, 2, 4
# and 8 query rows per block (2-core AMD EPYC, fp32); this budget gives it 4.
SCORE_BUDGET_BYTES = 512 * 2 ** 20
# Guidance downsampling and value-patch stride, as published; attend_blocked relies on it.
RATE = 2
# The blocks may take half of the memory left when the module starts (networks.stripes.memory_budget):
# the module's other tensors exist by then, and the blocks are its only large ones after. Under
# `--max-memory 3GiB` at 3840x2160 an eighth gave one row per block: 62 s instead of 47.
ATTENTION_SHARE = 2
# attend_blocked's buffers per score of a block of R query rows: the products ((R + 2) / R), the
# scores and the zero-padded attention ((R + 1) / R), so 3 to 4 from 8 rows down to 4.
FLOATS_PER_SCORE = 4


def extract_patches(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Reflect-pad by 1 and cut ``kernel`` x ``kernel`` patches: N x C x H x W -> N x L x C x k x k,
    L row-major over the patch grid."""
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    patches = x.unfold(2, kernel, stride).unfold(3, kernel, stride)
    n, c, ph, pw = patches.shape[:4]
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(n, ph * pw, c, kernel, kernel)


def softmax_scales(unknown: torch.Tensor) -> torch.Tensor:
    """Per image (unknown_scale, known_scale) = clamp(sqrt(p/q)), clamp(sqrt(q/p)), p the unknown
    fraction of the 1/16 mask: N x 1 x h x w -> N x 2."""
    unknown_mean = unknown.mean(dim=[2, 3])
    known_mean = 1 - unknown_mean
    unknown_scale = torch.clamp(torch.sqrt(unknown_mean / known_mean), 0.1, 10)
    known_scale = torch.clamp(torch.sqrt(known_mean / unknown_mean), 0.1, 10)
    return torch.cat([unknown_scale, known_scale], dim=1)


def sequential_key_norms(patches: torch.Tensor) -> torch.Tensor:
    """L2 norm of each L x C x k x k patch, summed over C, then the two k in turn (GCA-Matting's
    order): L x 1 x 1 x 1."""
    return (patches ** 2).sum(dim=1, keepdim=True).sum(dim=2, keepdim=True).sum(dim=3, keepdim=True).sqrt()


def published_key_norms(patches: torch.Tensor) -> torch.Tensor:
    """sequential_key_norms of L x C x 3 x 3 patches laid out in memory as GCA-Matting lays them
    (C innermost), so that the sums round as its code's do, whatever the layout given."""
    return sequential_key_norms(patches.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2))


def binary_penalty(fractions: torch.Tensor) -> torch.Tensor:
    """The self-match penalty of each key, from the unknown fraction of its 3 x 3 mask patch: the
    full penalty for any unknown pixel in it, none otherwise (GCA-Matting)."""
    return torch.where(fractions > 0, SELF_MATCH_PENALTY, 0.0).to(fractions.dtype)


def self_match_mask(h: int, w: int) -> torch.Tensor:
    """1 x L x h x w float, the penalty at (key l, query l) and 0 elsewhere, laid out as the
    published codes make it (one-hot over the keys, then permuted to the channels)."""
    one_hot = F.one_hot(torch.arange(h * w).view(h, w), num_classes=h * w)
    return one_hot.permute(2, 0, 1).view(1, h * w, h, w).float() * SELF_MATCH_PENALTY


def scaled_by_key(scores: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Scores times the unknown scale for keys whose mask value is > 0, the known one for the rest,
    in the published codes' arithmetic (a sum of two masked scales)."""
    return scores * (scale[0] * mask.gt(0.).float() + scale[1] * mask.le(0.).float())


def patch_padding(kernel: int, stride: int) -> Tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) that makes (H / stride) x (W / stride) patches."""
    left, right = (kernel - stride + 1) // 2, (kernel - stride) // 2
    return left, right, left, right


def published_patches(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """N x L x C x k x k patches laid out in memory as GCA-Matting lays them (a view of an
    N x h x w x k x k x C array): the layout decides the order of its float sums."""
    x = F.pad(x, patch_padding(kernel, stride), mode="reflect")
    patches = x.unfold(2, kernel, stride).unfold(3, kernel, stride)
    n, c, h, w = patches.shape[:4]
    patches = patches.permute(0, 2, 3, 4, 5, 1).contiguous()
    return patches.view(n, h * w, kernel, kernel, c).permute(0, 1, 4, 2, 3)


def score_propagate(guidance: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                    scales: torch.Tensor, key_norms: Callable[[torch.Tensor], torch.Tensor],
                    channels_last_scores: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """The literal forms' loop over the images, in the published codes' operations: the L x h x w
    scores of the normalised keys, scaled per key, the penalty where a query meets its own key
    (times `mask`: 1 x L x 1 x 1 per image, the keys' unknown values), the softmax over keys, the
    argmax and the propagation of the value patches. GCA-Matting softmaxes a channels-last copy
    of the scores (`channels_last_scores`), which sums in another order."""
    h, w = guidance.shape[2:]
    self_mask = self_match_mask(h, w).to(guidance)
    floor = torch.tensor([KEY_NORM_FLOOR]).to(guidance)
    outs, best_keys = [], []
    for i in range(guidance.shape[0]):
        normed = keys[i] / torch.max(key_norms(keys[i]), floor)
        scores = F.conv2d(F.pad(guidance[i:i + 1], (1, 1, 1, 1), mode="reflect"), normed)
        if channels_last_scores:
            scores = scores.permute(0, 2, 3, 1).contiguous().view(1, h, w, h * w).permute(0, 3, 1, 2)
        scores = scaled_by_key(scores, mask[i:i + 1], scales[i]) + self_mask * mask[i:i + 1]
        attention = F.softmax(scores, dim=1)
        best_keys.append(torch.max(attention, dim=1)[1])
        outs.append(F.conv_transpose2d(attention, values[i], stride=RATE, padding=1) / 4.)
    return torch.cat(outs), torch.cat(best_keys)


def attend_literal_published(guidance: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor,
                             scales: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """GCA-Matting's attention as its code computes it, operation by operation and in its memory
    layouts, so that its float sums run in the same order: an L x h x w score volume per image.

    guidance: N x C x h x w and unknown: N x 1 x h x w, both at 1/16; alpha: N x C' x 2h x 2w;
    scales: N x 2. Returns the propagated features N x C' x 2h x 2w and the argmax key N x h x w."""
    mask = published_patches(unknown, 3, 1)[:, :, 0]
    mask = mask.mean(dim=2, keepdim=True).mean(dim=3, keepdim=True).gt(0.).float()
    return score_propagate(guidance, published_patches(guidance, 3, 1), published_patches(alpha, 2 * RATE, RATE),
                           mask, scales, sequential_key_norms, channels_last_scores=True)


@dataclass(frozen=True)
class AttentionVariant:
    """What a reimplementation of the attention changed: how a key patch's norm is summed, how the
    self-match penalty depends on the key's unknown fraction, and the literal form (its own code's
    operations and layouts)."""
    name: str
    key_norms: Callable[[torch.Tensor], torch.Tensor]
    penalty: Callable[[torch.Tensor], torch.Tensor]
    literal: Callable[..., Tuple[torch.Tensor, torch.Tensor]]

    def floored_key_norms(self, patches: torch.Tensor) -> torch.Tensor:
        """The norms of L x C x 3 x 3 patches floored at KEY_NORM_FLOOR: L."""
        return torch.max(self.key_norms(patches), patches.new_tensor([KEY_NORM_FLOOR])).view(-1)

    def normalised_keys(self, patches: torch.Tensor) -> torch.Tensor:
        """L x C x 3 x 3 patches over their floored norms."""
        return patches / self.floored_key_norms(patches).view(-1, 1, 1, 1)


PUBLISHED = AttentionVariant("gca-matting", published_key_norms, binary_penalty, attend_literal_published)


def horizontal_triples(query: torch.Tensor) -> torch.Tensor:
    """(h + 2) w x 3C, row-major over the reflect-padded rows of a 1 x C x h x w grid and its w
    columns: each pixel's C features and its two right-hand neighbours' (a 1 x 3 patch). A 3 x 3
    patch is three of them, one above the other."""
    return F.unfold(F.pad(query, (1, 1, 1, 1), mode="reflect"), kernel_size=(1, 3))[0].t()


def attend_blocked(query: torch.Tensor, key_factor: torch.Tensor, alpha: torch.Tensor, penalty: torch.Tensor,
                   block: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The literal attention of one image computed a few rows of queries at a time, with about a
    third of the scores' products and a quarter of the propagation's.

    Scores, self-match penalty, softmax over all L keys and argmax are the literal form's up to
    the order of float sums. A score is the dot product of two 3 x 3 patches (9C features) times
    the key's factor; a 3 x 3 patch is three 1 x 3 ones (horizontal_triples) in rows y, y + 1,
    y + 2, so the scores of R query rows are three diagonally shifted copies of the (R + 2) x
    (h + 2) rows of products of 1 x 3 patches, summed: (R + 2)(h + 2) / 3Rh of the products.
    The propagation is regrouped: conv_transpose2d(attention, values) gives output pixel
    Y' = 2b + phase (per axis, before the padding crop) the sum over s in {0, 1}^2 of
    attention[b - s, k] * a_pad[2(k + s) + phase]. With m = k + s this is
    G[b, m] @ phases[m] where G[b, m] = sum_s attention[b - s, m - s] (a sum of four
    diagonally shifted copies of the attention) and phases[m] holds the four pixels
    a_pad[2m + phase]: an L' x 4C product instead of L x 16C, L' = (h + 1)(w + 1).

    query: 1 x C x h x w guidance; key_factor: L, each key's softmax scale over its patch's norm;
    alpha: 1 x C' x 2h x 2w; penalty: L, added to each key's score for its own query; block:
    queries per block, rounded down to whole rows of the h x w grid (at least one row).
    """
    h, w = query.shape[2:]
    length = h * w
    channels = alpha.shape[1]
    # Without autograd the blocks reuse a few buffers (out= and in-place operations), which
    # autograd cannot follow: with it every operation allocates its result, as torch's do.
    reuse = not (torch.is_grad_enabled() and (query.requires_grad or key_factor.requires_grad or alpha.requires_grad))
    triples = horizontal_triples(query)
    key_factor = key_factor.to(triples.dtype).view(1, 1, h, w)
    penalty = penalty.to(triples.dtype)
    padded = F.pad(alpha, (1, 1, 1, 1), mode="reflect")[0]
    phases = padded.view(channels, h + 1, 2, w + 1, 2).permute(1, 3, 2, 4, 0).reshape((h + 1) * (w + 1), 4 * channels)
    del padded
    out = phases.new_empty(h + 1, w + 1, 4 * channels)
    best_key = torch.empty(length, dtype=torch.long, device=query.device)
    rows = max(1, min(block // w, h))
    # Two buffers serve each block twice: the products, then `across`; the scores (softmaxed in
    # place), then `gathered`.
    first = second = None
    if reuse:
        first = triples.new_empty(max((rows + 2) * w * (h + 2) * w, (rows + 1) * (w + 1) * (h + 2) * (w + 1)))
        second = triples.new_empty(max(rows * w * h * w, rows * (w + 1) * (h + 1) * (w + 1)))
    # shifted[1 + r]: the attention of the block's query row r, zero-padded; shifted[0]: the row
    # above the block's, for the s = 1 terms. The padding is never written, so it stays zero.
    shifted = triples.new_zeros(rows + 1, w + 2, h + 2, w + 2)
    for top in range(0, h + 1, rows):
        bottom = min(top + rows, h + 1)  # output rows b in [top, bottom); attention rows up to h - 1
        count, attended = bottom - top, max(0, min(bottom, h) - top)
        if attended:
            products = torch.mm(triples[top * w:(top + attended + 2) * w], triples.t(),
                                out=_part(first, (attended + 2) * w, (h + 2) * w)).view(attended + 2, w, h + 2, w)
            scores = torch.add(products[:attended, :, :h], products[1:attended + 1, :, 1:h + 1],
                               out=_part(second, attended, w, h, w))
            scores = torch.add(scores, products[2:, :, 2:], out=scores if reuse else None)
            del products
            scores = torch.mul(scores, key_factor, out=scores if reuse else None).view(attended * w, length)
            start, stop = top * w, (top + attended) * w
            own = torch.arange(start, stop, device=scores.device)
            scores[own - start, own] += penalty[start:stop]
            attention = softmax_rows(scores, in_place=reuse)
            del scores
            best_key[start:stop] = torch.max(attention, dim=1)[1]
            shifted[1:1 + attended, 1:w + 1, 1:h + 1, 1:w + 1] = attention.view(attended, w, h, w)
            del attention
        shifted[1 + attended:1 + count] = 0  # below the last query row: no attention
        across = torch.add(shifted[:count + 1, 1:, :, 1:], shifted[:count + 1, :-1, :, :-1],
                           out=_part(first, count + 1, w + 1, h + 2, w + 1))
        gathered = torch.add(across[1:, :, 1:, :], across[:-1, :, :-1, :],
                             out=_part(second, count, w + 1, h + 1, w + 1))
        del across
        out[top:bottom] = (gathered.view(-1, phases.shape[0]) @ phases).view(count, w + 1, -1)
        del gathered
        above = shifted[count]
        if not reuse:
            shifted = triples.new_zeros(rows + 1, w + 2, h + 2, w + 2)
        shifted[0] = above
    out = out.view(h + 1, w + 1, 2, 2, channels).permute(4, 0, 2, 1, 3).reshape(1, channels, 2 * h + 2, 2 * w + 2)
    return out[:, :, 1:2 * h + 1, 1:2 * w + 1] / 4., best_key.view(1, h, w)


def softmax_rows(scores: torch.Tensor, in_place: bool) -> torch.Tensor:
    """F.softmax(scores, dim=1); on the CPU written over `scores` where `in_place` (its kernel reads
    each row before writing it: the same bits, without a second block of scores)."""
    if in_place and scores.device.type == "cpu":
        return torch.ops.aten._softmax.out(scores, 1, False, out=scores)
    return F.softmax(scores, dim=1)


def _part(buffer: Optional[torch.Tensor], *shape: int) -> Optional[torch.Tensor]:
    """The first elements of a flat buffer as a tensor of `shape`, or None without a buffer (an
    operation given out=None allocates its result)."""
    return None if buffer is None else buffer[:math.prod(shape)].view(shape)


def attention_flops(h: int, w: int, query_features: int, value_channels: int) -> int:
    """Floating-point operations (2 per multiply-add) of the attention's two matrix products for
    one image on an h x w grid, computed directly: the scores (L queries of `query_features`
    against L keys, L = h w) and the regrouped propagation ((h + 1)(w + 1) x L against L x 4
    value_channels). The floor issue 36 set for GCA's speed (networks.benchmark's "floor s"):
    attend_blocked computes the same scores with (R + 2)(h + 2) / 3Rh of their products (R query
    rows per block), so the floor measures the arithmetic the attention asks for, not a bound on
    this code's time."""
    length = h * w
    return 2 * length * length * query_features + 2 * (h + 1) * (w + 1) * length * 4 * value_channels


def choose_block(length: int, setting: int, device: torch.device) -> int:
    """Queries per block for L = `length` patches: LITERAL (-1) for the published L x L form;
    AUTO (0) for the largest block within the memory budget; a positive setting as given."""
    if setting > 0 or setting == LITERAL:
        return setting
    budget = memory_budget(device, SCORE_BUDGET_BYTES, share=ATTENTION_SHARE)
    return max(1, budget // (FLOATS_PER_SCORE * 4 * length))


class GuidedCxtAtten(nn.Module):
    """Propagates alpha features from keys to queries by the affinity of guidance features.

    forward(guidance, alpha_features, unknown) with all three at 1/8 of the input returns
    ``W(y) + alpha_features`` and ``(offsets N x 2 x h x w int64, scales N x 2)``, h x w = 1/16.
    """

    def __init__(self, out_channels: int = 128, guidance_channels: int = 128):
        super().__init__()
        self.block = AUTO
        self.variant = PUBLISHED
        self.guidance_conv = nn.Conv2d(guidance_channels, guidance_channels // 2, kernel_size=1)
        self.W = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False),
            InPlaceBatchNorm2d(out_channels),
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
        y = y.to(alpha.dtype)
        if alpha.is_contiguous(memory_format=torch.channels_last) and not alpha.is_contiguous():
            # the features' layout in a striped forward on the CPU, so that W's convolution runs in it
            y = y.contiguous(memory_format=torch.channels_last)
        return self.W(y) + alpha, (offsets, scales)

    def product_flops(self, guidance: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor) -> int:
        """attention_flops of a forward on these inputs (all at 1/8), every image of the batch."""
        h, w = guidance.shape[2] // RATE, guidance.shape[3] // RATE
        query_features = self.guidance_conv.out_channels * 9  # 3 x 3 patches
        return alpha.shape[0] * attention_flops(h, w, query_features, alpha.shape[1])

    def downsampled(self, guidance: torch.Tensor, unknown: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Guidance and unknown mask from 1/8 to the attention's 1/16 grid."""
        guidance = F.interpolate(guidance, scale_factor=1 / RATE, mode="nearest")
        unknown = F.interpolate(unknown, scale_factor=1 / RATE, mode="nearest")
        if unknown.shape[2:] != guidance.shape[2:]:
            raise ValueError(f"GCA: unknown mask {tuple(unknown.shape[2:])} and guidance "
                             f"{tuple(guidance.shape[2:])} differ at 1/16; the input size must be a multiple of 32")
        return guidance, unknown

    def attend(self, guidance: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor):
        guidance, unknown = self.downsampled(guidance, unknown)
        scales = softmax_scales(unknown).to(alpha)
        block = choose_block(guidance.shape[2] * guidance.shape[3], self.block, alpha.device)
        if block == LITERAL:
            out, best_keys = self.variant.literal(guidance, alpha, unknown, scales)
        else:
            fractions = extract_patches(unknown, kernel=3, stride=1).mean(dim=[2, 3, 4])
            outs, best = [], []
            for i in range(alpha.shape[0]):
                key_scale = torch.where(fractions[i] > 0, scales[i, 0], scales[i, 1])
                key_factor = key_scale / self.variant.floored_key_norms(extract_patches(guidance[i:i + 1], 3, 1)[0])
                out, best_key = attend_blocked(guidance[i:i + 1], key_factor, alpha[i:i + 1],
                                               self.variant.penalty(fractions[i]), block)
                outs.append(out)
                best.append(best_key)
            out, best_keys = torch.cat(outs, dim=0), torch.cat(best, dim=0)
        return out, self.offsets_from_indices(best_keys, guidance.shape[3]), scales

    @staticmethod
    def offsets_from_indices(best_key: torch.Tensor, width: int) -> torch.Tensor:
        """Key index N x h x w -> (row, col) of the key minus the grid centre, N x 2 x h x w."""
        h = best_key.shape[1]
        position = torch.stack([best_key // width, best_key % width], dim=1)
        centre = torch.tensor([h // 2, width // 2], device=best_key.device).view(1, 2, 1, 1)
        return position - centre
