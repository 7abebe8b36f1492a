"""ViTMatte ("ViTMatte: Boosting image matting with pre-trained plain vision transformers", Yao et
al., Information Fusion 2024; hustvl/ViTMatte, MIT), written for this project from the paper and
the published model's structure. Its module names are the released files' (`backbone.blocks.3.attn.
qkv.weight`, `decoder.fusion_blks.0.conv.bn.running_var`, ...), so those load under their own names.

The backbone is a plain ViT on image + trimap (4 channels): 16 x 16 patches, an absolute position
embedding made at the 14 x 14 grid of its 224-pixel pre-training and resized bicubically to the
image's grid, 12 blocks of attention with decomposed relative positions (MViTv2), in windows of 14
x 14 patches in blocks 0, 1, 3, 4, 6, 7, 9, 10 and over the whole image in 2, 5, 8, 11, each of the
global ones followed by a residual bottleneck of convolutions. The Detail Capture decoder: a
ConvStream of three stride-2 convolutions on the input (1/2, 1/4, 1/8), four fusion blocks that
upsample the features x 2 and join them with the ConvStream's map of that size (the last with the
input itself), and a head whose sigmoid is the alpha.

The network takes what the published meta-architecture takes, the image on 0..1 and the trimap
(grey / 255 at inference, 0 / 0.5 / 1 in training), and does what it does before and after the
model: normalises the image by its `pixel_mean` and `pixel_std` (kept in the state dict here;
networks/vitmatte/recipe.py fills them in at load), zero-pads image and trimap to a multiple of 32
by its `padding` rule (recipe.py), and crops the alpha back.

Bounded memory (eval mode, no gradients; ViTMatte.stripe_rows not WHOLE): the global blocks'
attention runs a few query rows of one head at a time, each block's scores with their
relative-position terms, and the decoder's last three fusions and its head run a stripe of rows
at a time. WHOLE computes it as published, every score and every map at once.
"""
import copy
import math
from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.export_form import scan_rows
from networks.stripes import AUTO, WHOLE, choose_stripe_rows, memory_budget
from networks.vitmatte.recipe import pad_for_network, padding_sides


@dataclass(frozen=True)
class ViTSize:
    """A ViT backbone's width, heads and blocks (every third block, 2, 5, 8, 11 of 12, attends
    globally and has the residual convolutions; the others attend in windows)."""
    width: int
    heads: int
    depth: int = 12


# model.arch.encoder: ViTMatte-S and -B (configs/common/model.py, ViTMatte_B_100ep.py), and a toy
# of the same structure (windows in blocks 0 and 1, global attention and convolutions in 2) for
# the tests and runs on a CPU, which has no released weights.
SIZES = {"vit_s": ViTSize(384, 6), "vit_b": ViTSize(768, 12), "vit_toy": ViTSize(32, 2, 3)}
PATCH = 16
WINDOW = 14
GLOBAL_EVERY = 3
# The absolute position embedding's grid (224-pixel pre-training, with a class token the network
# drops) and the relative position tables' of the global blocks (512-pixel training crops).
PRETRAIN_GRID, TRAIN_GRID = 224 // PATCH, 512 // PATCH
CONVSTREAM = (48, 96, 192)
FUSION = (256, 128, 64, 32)
HEAD_MIDDLE = 16
LAYER_NORM_EPS = 1e-6
INIT_STD = 0.02  # the published ViT's truncated-normal initialisation of its linear layers and positions
SCANNED = -2  # query_rows of the exported graph: one query row per step of an ONNX Scan
# Bytes of one query block's scores (one head, whole rows of the grid) in a global block.
SCORE_BLOCK_BYTES = 64 * 2 ** 20
FLOATS_PER_SCORE = 3  # the scores, their relative-position sum and the softmax alive at once
# Full-resolution rows computed above and below each decoder stripe and dropped (stripe_spans).
STRIPE_CONTEXT = 8
# Bytes alive per full-resolution pixel in a decoder stripe (fp32): the last fusion's 68-channel
# concatenation, its upsampled 64 channels and 32-channel output, the head's 16-channel maps, and
# the 1/2 and 1/4 fusions' maps per full-resolution pixel. An estimate used to size the stripes.
STRIPE_BYTES_PER_PIXEL = 1100


def is_global(index: int) -> bool:
    """Whether block `index` attends over the whole image (and has the residual convolutions)."""
    return index % GLOBAL_EVERY == GLOBAL_EVERY - 1


def resized_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """A relative position table (L x C) linearly resized to `length` rows: the published
    interpolation, used where the grid is not the one the table was trained at. At the same length
    the linear interpolation is the identity (its weights are exactly 1 and 0), so it always runs
    and the graph has no branch on the image size."""
    return F.interpolate(table.t()[None], size=length, mode="linear")[0].t()


def relative_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """size x size x C: the table's entry for each query position's offset from each key position
    along one axis (query - key + size - 1)."""
    resized = resized_table(table, 2 * size - 1)
    positions = torch.arange(size, device=table.device)
    return resized[positions[:, None] - positions[None, :] + size - 1]


def rows_per_block(width: int, tokens: int, setting: int, device: torch.device) -> int:
    """Query rows of the grid per attention block: WHOLE for all, a positive setting as given,
    AUTO as many as SCORE_BLOCK_BYTES (less where memory is short) holds for one head."""
    if setting != AUTO:
        return setting
    per_row = width * tokens * 4 * FLOATS_PER_SCORE
    return max(1, memory_budget(device, SCORE_BLOCK_BYTES) // per_row)


class Attention(nn.Module):
    """Multi-head self-attention over a grid of tokens with decomposed relative positions: each
    score gets the query's dot products with the table entries of its row offset and its column
    offset from the key. rel_pos_h / rel_pos_w: (2 x grid - 1) x head width, for the 14 x 14
    windows or the 32 x 32 grid of the training crops (resized for others)."""

    def __init__(self, width: int, heads: int, grid: int):
        super().__init__()
        self.heads = heads
        head_width = width // heads
        self.scale = head_width ** -0.5
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, head_width))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, head_width))
        self.query_rows = WHOLE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x H x W x C (a batch of windows, or of whole grids) -> the same shape."""
        batch, height, width, channels = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * self.heads, height * width, -1).unbind(0)
        row_table = relative_table(height, self.rel_pos_h)
        column_table = relative_table(width, self.rel_pos_w)
        if self.query_rows == SCANNED:
            out = self.attend_scanned(q, k, v, row_table, column_table, width)
        elif self.query_rows == WHOLE or self.query_rows >= height:
            out = self.attend(q, k, v, row_table, column_table, width)
        else:
            out = torch.empty_like(q)
            for head in range(q.shape[0]):
                one = slice(head, head + 1)
                for top in range(0, height, self.query_rows):
                    bottom = min(top + self.query_rows, height)
                    tokens = slice(top * width, bottom * width)
                    out[one, tokens] = self.attend(q[one, tokens], k[one], v[one], row_table[top:bottom],
                                                   column_table, width)
        out = out.view(batch, self.heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
        return self.proj(out)

    def attend_scanned(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, row_table: torch.Tensor,
                       column_table: torch.Tensor, width: int) -> torch.Tensor:
        """attend over one query row of the grid per step of the exporter's scan (an ONNX Scan
        in the exported graph, whose scores then take O(W x H W) memory at any image size)."""
        count, height = q.shape[0], row_table.shape[0]
        queries = q.reshape(count, height, width, -1).transpose(0, 1)
        k, v = k.clone(), v.clone()  # views of one qkv tensor: a higher-order op takes no aliased inputs

        def one_row(carry: torch.Tensor, row: Tuple[torch.Tensor, torch.Tensor]):
            query, table = row
            return carry.clone(), self.attend(query, k, v, table[None], column_table, width)

        _, rows = scan_rows(one_row, q.new_zeros(1), (queries, row_table))
        return rows.transpose(0, 1).reshape(q.shape)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, row_table: torch.Tensor,
               column_table: torch.Tensor, width: int) -> torch.Tensor:
        """softmax(q k^T scale + relative terms) v for the queries of whole grid rows: q n x (r W) x c,
        k, v n x (H W) x c, row_table r x H x c (the query rows' entries), column_table W x W x c."""
        count, rows, height = q.shape[0], row_table.shape[0], row_table.shape[1]
        scores = (q * self.scale) @ k.transpose(-2, -1)
        grid_q = q.reshape(count, rows, width, -1)
        rel_h = torch.einsum("nhwc,hkc->nhwk", grid_q, row_table)
        rel_w = torch.einsum("nhwc,wkc->nhwk", grid_q, column_table)
        scores = scores.view(count, rows, width, height, width) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
        return scores.view(count, rows * width, height * width).softmax(dim=-1) @ v


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an N x C x H x W map, in the published arithmetic
    ((x - mean) / sqrt(variance + eps), then the affine)."""

    def __init__(self, channels: int, eps: float = LAYER_NORM_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(variance + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ResBottleneckBlock(nn.Module):
    """x + (1 x 1 conv to half the width, LayerNorm, GELU, 3 x 3 conv, LayerNorm, GELU, 1 x 1 conv
    back, LayerNorm); the convolutions without bias."""

    def __init__(self, width: int):
        super().__init__()
        middle = width // 2
        self.conv1 = nn.Conv2d(width, middle, 1, bias=False)
        self.norm1 = ChannelLayerNorm(middle)
        self.act1 = nn.GELU()
        self.conv2 = nn.Conv2d(middle, middle, 3, padding=1, bias=False)
        self.norm2 = ChannelLayerNorm(middle)
        self.act2 = nn.GELU()
        self.conv3 = nn.Conv2d(middle, width, 1, bias=False)
        self.norm3 = ChannelLayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.act2(self.norm2(self.conv2(out)))
        return x + self.norm3(self.conv3(out))


def window_partition(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, int, int]:
    """B x H x W x C -> (B * windows) x window x window x C, zero-padded at the bottom/right to
    whole windows (the padding tokens take part in their windows' attention, as published), and
    the number of windows down and across. The padded sizes are written as whole windows, which
    keeps an export's shape arithmetic simple."""
    batch, height, width, channels = x.shape
    down, across = (height + window - 1) // window, (width + window - 1) // window
    x = F.pad(x, (0, 0, 0, across * window - width, 0, down * window - height))
    x = x.view(batch, down, window, across, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch * down * across, window, window, channels), down, across


def window_unpartition(windows: torch.Tensor, batch: int, down: int, across: int, height: int,
                       width: int) -> torch.Tensor:
    """window_partition undone, the padding cropped: batch x height x width x C."""
    window, channels = windows.shape[1], windows.shape[3]
    x = windows.view(batch, down, across, window, window, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, down * window, across * window, channels)[:, :height, :width]


class Block(nn.Module):
    """Pre-norm attention (in windows of `window` tokens, or global where 0) and MLP, each with a
    residual; then, where `residual`, the bottleneck of convolutions."""

    def __init__(self, width: int, heads: int, window: int, residual: bool):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = Attention(width, heads, window or TRAIN_GRID)
        self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(width, 4 * width)
        if residual:
            self.residual = ResBottleneckBlock(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x H x W x C tokens."""
        shortcut = x
        x = self.norm1(x)
        if self.window:
            batch, height, width = x.shape[:3]
            windows, down, across = window_partition(x, self.window)
            x = window_unpartition(self.attn(windows), batch, down, across, height, width)
        else:
            x = self.attn(x)
        x = shortcut + x
        x = x + self.mlp(self.norm2(x))
        if hasattr(self, "residual"):
            x = self.residual(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> N x H/16 x W/16 x width."""
        return self.proj(x).permute(0, 2, 3, 1)


class ViT(nn.Module):
    """The backbone: N x 4 x H x W (multiples of 16) -> N x width x H/16 x W/16, initialised as
    published (init_weights)."""

    def __init__(self, size: ViTSize, channels: int = 4):
        super().__init__()
        self.patch_embed = PatchEmbed(channels, size.width)
        self.pos_embed = nn.Parameter(torch.zeros(1, PRETRAIN_GRID ** 2 + 1, size.width))
        self.blocks = nn.ModuleList(Block(size.width, size.heads, 0 if is_global(index) else WINDOW, is_global(index))
                                    for index in range(size.depth))
        self.init_weights()

    def init_weights(self) -> None:
        """The published ViT's initialisation: the position embedding and every linear layer's
        weights truncated normal (std 0.02), their biases 0, the blocks' LayerNorms 1 and 0; the
        relative position tables 0; in the residual bottlenecks the convolutions He-normal (fan
        out) and the last norm 0, so that each bottleneck starts as the identity."""
        nn.init.trunc_normal_(self.pos_embed, std=INIT_STD)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)
            elif isinstance(module, ResBottleneckBlock):
                for conv in (module.conv1, module.conv2, module.conv3):
                    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.norm3.weight)

    def absolute_positions(self, height: int, width: int) -> torch.Tensor:
        """1 x height x width x C: the embedding without its class token, resized bicubically
        (without corner alignment) to the grid. At 14 x 14 the resize is the identity (cubic
        weights 0, 1, 0, 0), so it always runs, with no branch on the image size."""
        grid = self.pos_embed[:, 1:]
        side = math.isqrt(grid.shape[1])
        grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        return F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.absolute_positions(x.shape[1], x.shape[2])
        for block in self.blocks:
            x = block(x)
        return x.permute(0, 3, 1, 2)


class BasicConv3x3(nn.Module):
    """3 x 3 conv (no bias), BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ConvStream(nn.Module):
    """Detail maps of the input at 1/2, 1/4 and 1/8 by stride-2 BasicConv3x3s."""

    def __init__(self, in_channels: int = 4):
        super().__init__()
        channels = (in_channels,) + CONVSTREAM
        self.convs = nn.ModuleList(BasicConv3x3(a, b) for a, b in zip(channels, channels[1:]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(the input, its 1/2, 1/4 and 1/8 maps)."""
        maps = [x]
        for conv in self.convs:
            maps.append(conv(maps[-1]))
        return tuple(maps)


def upsample(features: torch.Tensor) -> torch.Tensor:
    """Bilinear x 2 without corner alignment. The size given, not the factor: the same values
    (the scale is 1/2 either way), and an export's shapes stay free of float truncation."""
    return F.interpolate(features, size=(2 * features.shape[2], 2 * features.shape[3]), mode="bilinear",
                         align_corners=False)


class FusionBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = BasicConv3x3(in_channels, out_channels, stride=1)

    def forward(self, features: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        """BasicConv3x3(detail ++ features upsampled x 2)."""
        return self.conv(torch.cat([detail, upsample(features)], dim=1))


class MattingHead(nn.Module):
    def __init__(self, in_channels: int = FUSION[-1]):
        super().__init__()
        self.matting_convs = nn.Sequential(nn.Conv2d(in_channels, HEAD_MIDDLE, 3, 1, 1), nn.BatchNorm2d(HEAD_MIDDLE),
                                           nn.ReLU(inplace=True), nn.Conv2d(HEAD_MIDDLE, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.matting_convs(x)


class DetailCapture(nn.Module):
    """The decoder: the ViT's 1/16 features and the network input -> the alpha (sigmoid)."""

    def __init__(self, width: int, in_channels: int = 4):
        super().__init__()
        self.convstream = ConvStream(in_channels)
        fused = (width,) + FUSION
        details = ((in_channels,) + CONVSTREAM)[::-1]
        self.fusion_blks = nn.ModuleList(FusionBlock(fused[i] + details[i], fused[i + 1]) for i in range(len(FUSION)))
        self.matting_head = MattingHead()

    def forward(self, features: torch.Tensor, inputs: torch.Tensor, rows: int = WHOLE) -> torch.Tensor:
        """The alpha, whole (rows WHOLE) or `rows` full-resolution rows at a time (striped)."""
        details = self.convstream(inputs)[::-1]
        if rows == WHOLE or rows >= inputs.shape[2]:
            for fusion, detail in zip(self.fusion_blks, details):
                features = fusion(features, detail)
            return torch.sigmoid(self.matting_head(features))
        return self.striped(self.fusion_blks[0](features, details[0]), details[1:], rows)

    def striped(self, coarsest: torch.Tensor, details: Tuple[torch.Tensor, ...], rows: int) -> torch.Tensor:
        """The fusions after the first and the head, `rows` alpha rows at a time, from the first
        fusion's 1/8 map and the ConvStream maps at 1/4, 1/2 and full resolution (`details`). Each
        stripe is computed on the rows stripe_spans gives, whose edge rows are then dropped: the
        rows kept are the whole form's."""
        full = details[-1]
        height = full.shape[2]
        alpha = full.new_empty(full.shape[0], 1, height, full.shape[3])
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            spans = stripe_spans(top, bottom, height, len(details))
            start, stop = spans[-1]
            features = coarsest[:, :, start:stop]
            for fusion, detail, (first, last) in zip(self.fusion_blks[1:], details, spans[-2::-1]):
                fine = upsample(features)[:, :, first - 2 * start:last - 2 * start]
                features, start = fusion.conv(torch.cat([detail[:, :, first:last], fine], dim=1)), first
            stripe = torch.sigmoid(self.matting_head(features))
            alpha[:, :, top:bottom] = stripe[:, :, top - start:bottom - start]
        return alpha


def stripe_spans(top: int, bottom: int, height: int, levels: int) -> List[Tuple[int, int]]:
    """The rows [start, stop) a decoder stripe computes for alpha rows [top, bottom): at full
    resolution STRIPE_CONTEXT more on each side, then at each of `levels` coarser scales (each half
    the last) the rows the finer span's upsampling reads and one more on each side, all within the
    image. At a span's edge the zero padding of the 3 x 3 convs and the upsampling's clamp spoil a
    row or two at each scale, which the upsampling doubles: 5 full-resolution rows, less than the
    context."""
    spans = [(max(top - STRIPE_CONTEXT, 0), min(bottom + STRIPE_CONTEXT, height))]
    for _ in range(levels):
        start, stop = spans[-1]
        height //= 2
        spans.append((max(start // 2 - 1, 0), min(-(-stop // 2) + 1, height)))
    return spans


class ViTMatte(nn.Module):
    """network(image N x 3 x H x W RGB on 0..1, trimap N x 1 x H x W grey / 255) -> (alpha N x 1 x
    H x W, None), any H and W. `padding`: the rule the input is zero-padded by (recipe.PADDINGS).

    Bounded memory, in eval mode without gradients: `stripe_rows` full-resolution rows of the
    decoder at a time (AUTO: as many as the stripe budget holds; a number; WHOLE: the published
    computation, whole maps and whole attention), and `query_rows` query rows of one head at a time
    in the global blocks (AUTO: as many as the score budget holds; a number; WHOLE: all). The
    exported form (`exportable`) is the whole one but for its global attention, SCANNED."""

    def __init__(self, size: ViTSize, padding: str):
        super().__init__()
        self.padding = padding
        self.backbone = ViT(size)
        self.decoder = DetailCapture(size.width)
        self.register_buffer("pixel_mean", torch.zeros(3, 1, 1))
        self.register_buffer("pixel_std", torch.ones(3, 1, 1))
        self.stripe_rows, self.query_rows = AUTO, AUTO

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, None]:
        height, width = image.shape[2:]
        inputs = pad_for_network(torch.cat(((image - self.pixel_mean) / self.pixel_std, trimap), 1), self.padding)
        bounded = not (self.training or torch.is_grad_enabled() or self.stripe_rows == WHOLE)
        self.set_query_rows(inputs, bounded)
        rows = choose_stripe_rows(inputs.shape[3], self.stripe_rows, inputs.device, STRIPE_BYTES_PER_PIXEL) \
            if bounded else WHOLE
        alpha = self.decoder(self.backbone(inputs), inputs, rows)
        return alpha[:, :, :height, :width], None

    def set_query_rows(self, inputs: torch.Tensor, bounded: bool) -> None:
        """Sets the global blocks' query rows per attention block for this input."""
        grid_height, grid_width = inputs.shape[2] // PATCH, inputs.shape[3] // PATCH
        rows = WHOLE
        if bounded:
            rows = rows_per_block(grid_width, grid_height * grid_width, self.query_rows, inputs.device)
        if self.query_rows == SCANNED:
            rows = SCANNED
        for block in self.backbone.blocks:
            if not block.window:
                block.attn.query_rows = rows

    def literal_peak_bytes(self, height: int, width: int) -> int:
        """Bytes of one global block's attention in the whole form (stripe_rows WHOLE) for a
        height x width image: every head's L x L scores, their relative-position sum and the
        softmax, L the padded image's tokens. What decides whether the published computation fits
        (networks.benchmark)."""
        rows, columns = padding_sides(height, width, self.padding)
        tokens = (height + rows) // PATCH * ((width + columns) // PATCH)
        return self.backbone.blocks[0].attn.heads * tokens ** 2 * 4 * FLOATS_PER_SCORE


def exportable(network: ViTMatte) -> ViTMatte:
    """The form networks.export captures: an eval-mode copy, its decoder whole (the stripes'
    count is Python-level) and its global attention a Scan over the query rows."""
    network = copy.deepcopy(network).eval()
    network.stripe_rows, network.query_rows = WHOLE, SCANNED
    return network
