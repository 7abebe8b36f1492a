"""Swin Transformer stages as AEMatter uses them, written for this project from the Swin paper (Liu
et al., ICCV 2021) and AEMatter's model: 7 x 7 windows, every second block shifted by 3 with
Swin's region mask, a learned relative position bias, pre-norm attention and MLP; the backbone
(Swin-T: 96 channels, depths 2, 2, 6, 2) with AEMatter's stride-2 3 x 3 patch embedding and a
norm on each stage's output; the decoder stages (three blocks each).

Token maps travel as N x H x W x C grids. A block is padded with zeros after its first norm to
multiples of 7 at the bottom/right and those zeros take part in the attention, as published.

Bounded memory: a block computes its output a band of window rows at a time (`window_rows`): each
band gathers the rows of its windows (through the cyclic shift, which wraps the band's rows round
the padded grid), runs attention and MLP on them and writes them back into the map in place (each
row belongs to one band only). The same windows through the same layers: the whole map at once is
the band of all window rows. Not always the same bits: a band's matrix products run over fewer
windows, and the math library may pick another kernel for that size and sum in another order
(differences of a few fp32 roundings; tests/test_aematter.py bounds them).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.stripes import AUTO, WHOLE, memory_budget

WINDOW = 7
# Added to the score of a key from another region of a shifted window (Swin's value, not -inf).
OTHER_REGION_SCORE = -100.0
# Working set of one band of windows.
BAND_BUDGET_BYTES = 256 * 2 ** 20
# Floats alive per token and channel while a band runs (q, k, v, the scores and their softmax,
# the MLP's hidden layer, the band's copies), an upper estimate used to size the bands.
FLOATS_PER_CHANNEL = 16


def relative_position_index(window: int) -> torch.Tensor:
    """N x N (N = window^2, positions row-major): the entry of the (2 window - 1)^2 bias table for
    the offset (dy, dx) of query minus key, (dy + window - 1)(2 window - 1) + dx + window - 1."""
    rows, columns = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, columns = rows.flatten(), columns.flatten()
    dy = rows[:, None] - rows[None, :] + window - 1
    dx = columns[:, None] - columns[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def region_labels(size: int, window: int, shift: int) -> torch.Tensor:
    """Along one axis of the padded, cyclically shifted grid: 0 for positions whose window holds no
    wrapped content, 1 for the last window's part before the wrap, 2 for the wrapped part."""
    labels = torch.zeros(size, dtype=torch.long)
    labels[size - window:] = 1
    labels[size - shift:] = 2
    return labels


def shifted_window_mask(padded: Tuple[int, int], window: int, shift: int, window_rows: slice) -> torch.Tensor:
    """The scores added in shifted windows, for the windows of `window_rows` (row-major over the
    padded grid's windows): 0 between tokens of one region, OTHER_REGION_SCORE across regions.
    W x N x N."""
    height, width = padded
    labels = region_labels(height, window, shift)[:, None] * 3 + region_labels(width, window, shift)[None, :]
    labels = labels[window_rows.start * window:window_rows.stop * window]
    windows = labels.reshape(-1, window, width // window, window).permute(0, 2, 1, 3).reshape(-1, window * window)
    different = windows[:, :, None] != windows[:, None, :]
    return torch.where(different, OTHER_REGION_SCORE, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window with a relative position bias."""

    def __init__(self, dim: int, heads: int, window: int = WINDOW):
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, windows: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """windows: B x N x C (B = images x windows, N = window^2 tokens); mask: W x N x N for the
        W windows of each image, or None. Returns B x N x C."""
        count, tokens, channels = windows.shape
        qkv = self.qkv(windows).reshape(count, tokens, 3, self.heads, channels // self.heads).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        scores = (query * self.scale) @ key.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        scores = scores + bias.view(tokens, tokens, -1).permute(2, 0, 1).contiguous()[None]
        if mask is not None:
            per_image = mask.shape[0]
            scores = scores.view(count // per_image, per_image, self.heads, tokens, tokens) + mask[None, :, None]
            scores = scores.view(-1, self.heads, tokens, tokens)
        attended = (scores.softmax(dim=-1) @ value).transpose(1, 2).reshape(count, tokens, channels)
        return self.proj(attended)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def padded_size(size: int, window: int = WINDOW) -> int:
    return -(-size // window) * window


def choose_window_rows(width: int, channels: int, setting: int, device: torch.device, window: int = WINDOW) -> int:
    """Window rows per band of a block on a map `width` tokens wide: WHOLE (-1) for all at once,
    AUTO (0) for as many as BAND_BUDGET_BYTES allows (at least 1), a positive setting as given."""
    if setting != AUTO:
        return setting
    per_window_row = window * padded_size(width, window) * channels * FLOATS_PER_CHANNEL * 4
    return max(1, memory_budget(device, BAND_BUDGET_BYTES) // per_window_row)


def drop_path(branch: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: in training, each sample's residual branch zeroed with probability `rate`
    and the others scaled by 1 / (1 - rate); the branch as it is otherwise."""
    if not training or rate == 0:
        return branch
    keep = branch.new_empty((branch.shape[0],) + (1,) * (branch.dim() - 1)).bernoulli_(1 - rate)
    return branch * keep.div_(1 - rate)


class SwinBlock(nn.Module):
    """x + attention(norm1(x)) in (shifted) windows, then x + mlp(norm2(x)); in training each
    branch goes through stochastic depth at `drop_path` (the published rates; 0 at inference)."""

    def __init__(self, dim: int, heads: int, shift: int, window: int = WINDOW, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.window, self.shift, self.drop_path = window, shift, drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, grid: torch.Tensor, window_rows: int = WHOLE) -> torch.Tensor:
        """grid: N x H x W x C -> the block's output, N x H x W x C. window_rows: WHOLE for all
        windows at once, as published (a new tensor); else the windows are computed that many
        window rows at a time and written into `grid` itself, which is returned (inference only)."""
        height, width = grid.shape[1:3]
        bands = padded_size(height, self.window) // self.window
        window_rows = choose_window_rows(width, grid.shape[3], window_rows, grid.device, self.window)
        if window_rows == WHOLE or window_rows >= bands:
            return self.whole(grid)
        for first in range(0, bands, window_rows):
            rows, output = self.band(grid, first, min(first + window_rows, bands))
            grid.index_copy_(1, rows, output)
        return grid

    def whole(self, grid: torch.Tensor) -> torch.Tensor:
        """The published computation: norm, zero padding, the cyclic shift, attention in every
        window, the shift undone, the crop, then the MLP."""
        height, width = grid.shape[1:3]
        padded = F.pad(self.norm1(grid), (0, 0, 0, padded_size(width, self.window) - width,
                                          0, padded_size(height, self.window) - height))
        if self.shift:
            padded = torch.roll(padded, -self.shift, dims=1)
        attended = self.attend(padded, 0, padded.shape[1] // self.window, padded.shape[1])
        if self.shift:
            attended = torch.roll(attended, self.shift, dims=1)
        return self.finish(grid, attended[:, :height, :width])

    def band(self, grid: torch.Tensor, first: int, last: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The block's output on the rows of window rows [first, last) of the padded, shifted grid:
        (their row indices in `grid`, N x R x W x C)."""
        images, height, width, channels = grid.shape
        # Row i of the shifted grid is row (i + shift) mod padded height of the padded grid, whose
        # rows from `height` on are zeros.
        source = (torch.arange(first * self.window, last * self.window, device=grid.device) + self.shift)
        source = source % padded_size(height, self.window)
        inside = source < height
        rows = source[inside]
        shortcut = grid.index_select(1, rows)
        band = grid.new_zeros(images, source.shape[0], padded_size(width, self.window), channels)
        band[:, inside, :width] = self.norm1(shortcut)
        attended = self.attend(band, first, last, padded_size(height, self.window))
        return rows, self.finish(shortcut, attended[:, inside, :width])

    def attend(self, band: torch.Tensor, first: int, last: int, padded_height: int) -> torch.Tensor:
        """Attention in the windows of window rows [first, last) of the normed grid, zero-padded to
        `padded_height` x W' and shifted along its rows, given as those rows (N x 7 (last - first)
        x W' x C): the shift along the columns, the windows, the region mask, and back. Same shape
        out."""
        images, rows, width, channels = band.shape
        window, columns = self.window, width // self.window
        if self.shift:
            band = torch.roll(band, -self.shift, dims=2)
        windows = band.view(images, last - first, window, columns, window, channels).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(-1, window * window, channels)
        mask = None
        if self.shift:
            mask = shifted_window_mask((padded_height, width), window, self.shift, slice(first, last)).to(band)
        attended = self.attn(windows, mask).view(images, last - first, columns, window, window, channels)
        band = attended.permute(0, 1, 3, 2, 4, 5).reshape(images, rows, width, channels)
        return torch.roll(band, self.shift, dims=2) if self.shift else band

    def finish(self, shortcut: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        x = shortcut + drop_path(attended, self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class PatchMerging(nn.Module):
    """2 x 2 neighbours concatenated (top-left, bottom-left, top-right, bottom-right), normed and
    projected to twice the channels: N x H x W x C -> N x H/2 x W/2 x 2C (odd sizes zero-padded)."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        height, width = grid.shape[1:3]
        grid = F.pad(grid, (0, 0, 0, width % 2, 0, height % 2))
        merged = torch.cat([grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(merged))


class SwinStage(nn.Module):
    """`depth` blocks, the odd ones shifted by half a window, and optionally a PatchMerging;
    drop_path: the blocks' stochastic-depth rate, one for all or one per block."""

    def __init__(self, dim: int, depth: int, heads: int, window: int = WINDOW, downsample: bool = False,
                 drop_path: Union[float, Sequence[float]] = 0.0):
        super().__init__()
        rates = [drop_path] * depth if isinstance(drop_path, (int, float)) else list(drop_path)
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, 0 if index % 2 == 0 else window // 2, window,
                                              drop_path=rates[index]) for index in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, grid: torch.Tensor, window_rows: int = WHOLE) -> torch.Tensor:
        for block in self.blocks:
            grid = block(grid, window_rows)
        return grid

    def feature_map(self, features: torch.Tensor, window_rows: int = WHOLE) -> torch.Tensor:
        """The stage on an N x C x H x W map (AEMatter's decoder stages), N x C x H x W out. The
        output is laid out channel by channel as the published stages leave it (their residual
        sums keep the layout of the input map), which the upsampling after it reads: its kernel
        for channels-last input rounds differently."""
        grid = self(features.permute(0, 2, 3, 1).contiguous(), window_rows)
        return grid.permute(0, 3, 1, 2).contiguous()


class PatchEmbed(nn.Module):
    """AEMatter's patch embedding: a 64 -> 96 stride-2 3 x 3 conv (it replaces Swin's 4 x 4 patches)
    and a LayerNorm."""

    def __init__(self, in_channels: int = 64, dim: int = 96):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, 2, 1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> N x H/2 x W/2 x dim."""
        return self.norm(self.proj(features).permute(0, 2, 3, 1))


class SwinBackbone(nn.Module):
    """Swin-T on AEMatter's stem features: four stages (96, 192, 384, 768 channels at 1/2 .. 1/16
    of its input), each stage's output normed (norm0 .. norm3) and returned as N x C x H x W. In
    training the blocks' stochastic depth rises linearly from 0 to `drop_path_rate` over the
    blocks, as Swin's (AEMatter trains with 0.2)."""

    def __init__(self, dim: int = 96, depths: Tuple[int, ...] = (2, 2, 6, 2), heads: Tuple[int, ...] = (3, 6, 12, 24),
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.patch_embed = PatchEmbed(64, dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:index]) for index in range(len(depths))]
        self.layers = nn.ModuleList(SwinStage(dim * 2 ** index, depth, head, downsample=index < len(depths) - 1,
                                              drop_path=rates[start:start + depth])
                                    for index, (depth, head, start) in enumerate(zip(depths, heads, starts)))
        for index in range(len(depths)):
            self.add_module(f"norm{index}", nn.LayerNorm(dim * 2 ** index))

    def forward(self, features: torch.Tensor, window_rows: int = WHOLE) -> List[torch.Tensor]:
        grid = self.patch_embed(features)
        outputs = []
        for index, stage in enumerate(self.layers):
            grid = stage(grid, window_rows)
            norm = getattr(self, f"norm{index}")
            outputs.append(norm(grid).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                grid = stage.downsample(grid)
        return outputs
