"""GCA-Matting's network in exportable form (its Family.export): the spectral norms folded into
plain weights and the attention as a Scan over the rows of its 1/16 grid (ScannedGCA), so that
one graph serves every image size and no L x L score volume is ever allocated."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.export_form import exportable_copy, scan_rows
from networks.gca_matting.gca import RATE, GuidedCxtAtten, extract_patches, softmax_scales
from networks.gca_matting.spectral_norm import SpectralNorm


def _shifted_sum(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """attend_blocked's G for one output row b: the sum over s in {0, 1}^2 of the attention of
    query row b - s_y at (query x - s_x, key - s), from the zero-padded attention rows of query
    rows b - 1 and b, each (w + 2) x (h + 2) x (w + 2). Returns (w + 1) x (h + 1)(w + 1)."""
    pair = torch.stack([previous, current])
    across = pair[:, 1:, :, 1:] + pair[:, :-1, :, :-1]
    gathered = across[1, :, 1:, :] + across[0, :, :-1, :]
    return gathered.reshape(gathered.shape[0], -1)


def attend_scanned(patches: torch.Tensor, keys: torch.Tensor, alpha: torch.Tensor, key_scale: torch.Tensor,
                   penalty: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """The blocked attention as a Scan over the rows of the query grid, one row per step, so that
    one graph serves every image size: the scores of a row's w queries against all L keys, as
    direct products of the 3 x 3 patches (the key scales folded into the keys; attend_blocked's
    shared 1 x 3 products need three rows at once), the self-match penalty, the softmax over keys, and the
    regrouped propagation, which needs the row above's attention (the scan's carry).
    Whole rows keep every shape a plain product of h and w, which torch.export reasons about
    in seconds.

    patches: L x C x 3 x 3 guidance patches (flattened, the queries); keys: the same normalised;
    alpha: 1 x C' x 2h x 2w; key_scale, penalty: L each (see attend_blocked); grid: (h, w),
    L = h w. Returns 1 x C' x 2h x 2w."""
    height, width = grid
    length, channels = patches.shape[0], alpha.shape[1]
    key_matrix = keys.reshape(length, -1).t() * key_scale
    padded = F.pad(alpha, (1, 1, 1, 1), mode="reflect")[0]
    phases = padded.reshape(channels, height + 1, 2, width + 1, 2).permute(1, 3, 2, 4, 0)
    phases = phases.reshape((height + 1) * (width + 1), 4 * channels)
    queries = patches.reshape(height, width, -1)
    penalty = penalty.reshape(height, width)
    key_index = torch.arange(length)

    def one_row(previous: torch.Tensor, row: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        query, own, own_penalty = row
        scores = query @ key_matrix + torch.where(key_index == own[:, None], own_penalty[:, None], 0.0)
        attention = F.softmax(scores, dim=1).reshape(width, height, width)
        current = F.pad(attention, (1, 1, 1, 1, 1, 1))
        return current, _shifted_sum(previous, current) @ phases

    start = key_matrix.new_zeros(width + 2, height + 2, width + 2)
    last, rows = scan_rows(one_row, start, (queries, key_index.reshape(height, width), penalty))
    final = _shifted_sum(last, torch.zeros_like(last)) @ phases
    out = torch.cat([rows, final[None]]).reshape(height + 1, width + 1, 2, 2, channels)
    out = out.permute(4, 0, 2, 1, 3).reshape(1, channels, 2 * height + 2, 2 * width + 2)
    return out[:, :, 1:2 * height + 1, 1:2 * width + 1] / 4.


class ScannedGCA(GuidedCxtAtten):
    """GuidedCxtAtten whose attention is attend_scanned: one graph for every image size, the
    scores in memory O(L x w) (w = the 1/16 grid's width). Batch size 1; no offsets (None),
    which the exported graph does not output."""

    def attend(self, guidance: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor):
        if alpha.shape[0] != 1:
            raise ValueError(f"ScannedGCA takes one image at a time, got a batch of {alpha.shape[0]}")
        # On these even sizes the slices are exactly nearest downsampling by 1/2; unlike
        # F.interpolate they keep torch.export's shape expressions free of float truncation,
        # and the checks let it equate the two grids (the export takes half the time).
        guidance, unknown = guidance[:, :, ::RATE, ::RATE], unknown[:, :, ::RATE, ::RATE]
        torch._check(unknown.shape[2] == guidance.shape[2])
        torch._check(unknown.shape[3] == guidance.shape[3])
        scales = softmax_scales(unknown).to(alpha)
        fractions = extract_patches(unknown, kernel=3, stride=1).mean(dim=[2, 3, 4])[0]
        patches = extract_patches(guidance, kernel=3, stride=1)[0]
        key_scale = torch.where(fractions > 0, scales[0, 0], scales[0, 1])
        out = attend_scanned(patches, self.variant.normalised_keys(patches), alpha, key_scale,
                             self.variant.penalty(fractions), tuple(guidance.shape[2:]))
        return out, None, scales


def _plain_conv(wrapper: SpectralNorm) -> nn.Module:
    """The wrapped conv with its eval-mode normalised weight as a plain `weight`."""
    conv = wrapper.module
    weight = wrapper.normalized_weight().detach()
    for name in ("weight_u", "weight_v", "weight_bar"):
        del conv._parameters[name]
    conv.weight = nn.Parameter(weight, requires_grad=False)
    return conv


def _scanned(module: GuidedCxtAtten) -> ScannedGCA:
    scanned = ScannedGCA(module.W[0].in_channels, module.guidance_conv.in_channels)
    scanned.load_state_dict(module.state_dict())
    scanned.variant = module.variant
    return scanned.eval()


def exportable(network: nn.Module) -> nn.Module:
    """An eval-mode copy of a GCA-Matting (or MMagic GCA / baseline) network in exportable form:
    spectral norms folded, ScannedGCA attention, then export_form's shared rewrites."""
    return exportable_copy(network, (SpectralNorm, _plain_conv), (GuidedCxtAtten, _scanned))
