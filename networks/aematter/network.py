"""AEMatter ("Revisiting Context Aggregation for Image Matting", Liu et al., ICML 2024), written for
this project from the paper and an understanding of the published model; its module names are the
released checkpoints' (AEMFIX.ckpt: {'model': state dict}), so the file loads as it is.

The network: two stem conv blocks on image + one-hot trimap (6 channels, full and 1/2 resolution),
a Swin-T backbone whose patch embedding is a 64 -> 96 stride-2 conv (1/4 .. 1/32), appearance
guidance from the 1/16 and 1/32 features, three AEAL blocks at 1/32 (axis-wise attention: half the
channels attend along strips 5 rows high, the other half along strips 5 columns wide, after a
gated fusion with the guidance), a decoder of 1 x 1 joins and Swin stages back to 1/4, conv blocks
at 1/2 and at full resolution, and the alpha clamped to [0, 1].

Bounded memory (eval mode, no gradients, `stripe_rows` not WHOLE): the full-resolution stem and
tail (1 KB per pixel in the whole form: 9 GB at 3840 x 2160) run a stripe of rows at a time with
enough rows of context on both sides that the kept rows are those of the whole image, the 1 x 1
joins at 1/4 .. 1/16 run in stripes, and the Swin blocks a band of window rows at a time
(networks.aematter.swin). `stripe_rows = WHOLE` computes it as published, whole maps at once.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.aematter.swin import AUTO, WHOLE, SwinBackbone, SwinStage
from networks.stripes import choose_stripe_rows

STRIP = 5
# Bytes alive per full-resolution pixel in a tail stripe (fp32): the 102-channel concatenation,
# the 48-channel maps and the 32-channel convolutions at full resolution, the 1/2-resolution
# block's maps. An estimate used to size the stripes.
TAIL_BYTES_PER_PIXEL = 1600
# Rows of context above and below each stripe: full-resolution rows for the tail (the upsampling
# spoils 1 row at a stripe's edge, the stem conv 1 and the three output convs 3 more: 5 < 8),
# 1/2-resolution rows for the stem (2 spoiled) and for the 1/2-resolution block (1 + 3 = 4 < 6).
TAIL_CONTEXT, HALF_CONTEXT = 8, 6
# Bytes of attention scores made at once in an AEAL block (a strip's are heads x T x T floats).
STRIP_SCORE_BYTES = 64 * 2 ** 20
# The published training regularisation: the backbone's stochastic depth (rising to 0.2 over its
# blocks), the decoder stages' (ctran0 .. ctran3), and the AEAL blocks' dropout.
BACKBONE_DROP_PATH = 0.2
DECODER_DROP_PATHS = (0.09, 0.07, 0.05, 0.03)
AEAL_DROPOUT = 0.2


def upsample(features: torch.Tensor) -> torch.Tensor:
    """Bilinear x 2 without corner alignment (AEMatter's `up`)."""
    return F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=False)


def nearest_upsample(features: torch.Tensor) -> torch.Tensor:
    return F.interpolate(features, scale_factor=2, mode="nearest")


def with_context(first: int, last: int, context: int, size: int, multiple: int = 2) -> Tuple[int, int]:
    """Rows [first, last) widened by `context` on both sides within [0, size), the ends on
    multiples of `multiple` (size is one)."""
    start = max(first - context, 0) // multiple * multiple
    stop = min(-(-(last + context) // multiple) * multiple, size)
    return start, stop


class ResBlock(nn.Module):
    """1 x 1, 3 x 3, 1 x 1 convs (GroupNorm with 16 groups after the first two), a residual, leaky
    ReLUs of slope 0.1."""

    def __init__(self, channels: int, middle: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, middle, 1)
        self.gn1 = nn.GroupNorm(16, middle)
        self.conv2 = nn.Conv2d(middle, middle, 3, padding=1)
        self.gn2 = nn.GroupNorm(16, middle)
        self.conv3 = nn.Conv2d(middle, channels, 1)
        self.relu = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.gn1(self.conv1(x)))
        y = self.relu(self.gn2(self.conv2(y)))
        return self.relu(self.conv3(y) + x)


class StripAttention(nn.Module):
    """Multi-head self-attention over the tokens of each strip, in torch's MultiheadAttention
    parameter layout (in_proj_weight / in_proj_bias for q, k, v stacked; out_proj), computed as
    torch 2's fused CPU path of nn.MultiheadAttention computes it in eval mode, which the published
    model takes: the projection without bias, then q = (q + bias) / sqrt(head dim), k + bias,
    v + bias, softmax(q k^T) v, the output projection. In eval mode without gradients the scores
    are made for as many strips at a time as STRIP_SCORE_BYTES allows. In training the attention
    weights go through dropout at `dropout`, as MultiheadAttention's."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: S x T x C (S strips of T tokens) -> S x T x C."""
        strips, count, channels = tokens.shape
        width = channels // self.heads
        query, key, value = ((tokens @ self.in_proj_weight.t()) + self.in_proj_bias).split(channels, dim=-1)
        query, key, value = (t.reshape(strips, count, self.heads, width).transpose(1, 2)
                             for t in (query * width ** -0.5, key, value))
        step = strips if torch.is_grad_enabled() else max(1, STRIP_SCORE_BYTES // (4 * self.heads * count * count))
        pieces = []
        for first in range(0, strips, step):
            weights = (query[first:first + step] @ key[first:first + step].transpose(-2, -1)).softmax(-1)
            pieces.append(F.dropout(weights, self.dropout, self.training) @ value[first:first + step])
        attended = torch.cat(pieces)
        attended = attended.transpose(1, 2).reshape(strips * count, channels)
        return self.out_proj(attended).view(strips, count, channels)


class AEALBlock(nn.Module):
    """One AEAL block on a 1/32 map whose height and width are multiples of STRIP: the map plus
    gamma times a fusion of it with the guidance; then post-norm attention (rows strips on the
    first half of the channels, column strips on the second) and a post-norm feed-forward layer.
    In training, dropout at `dropout` on the attention weights, the attention's output, the
    feed-forward layer's hidden units and its output (the published 0.2; none at inference)."""

    def __init__(self, dim: int = 640, heads: int = 20, hidden: int = 2048, guidance: int = 512,
                 dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout
        self.self_attn2 = StripAttention(dim // 2, heads // 2, dropout)
        self.self_attn1 = StripAttention(dim // 2, heads // 2, dropout)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.trans = nn.Sequential(nn.Conv2d(dim + guidance, dim // 2, 1), ResBlock(dim // 2, dim // 4),
                                   nn.Conv2d(dim // 2, dim, 1))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        features = self.gamma * self.trans(torch.cat([features, guidance], 1)) + features
        images, channels, height, width = features.shape
        half = channels // 2
        # row strips: (image, strip) x (row in strip, column) tokens; column strips likewise
        rows = features[:, :half].reshape(images, half, height // STRIP, STRIP, width)
        rows = rows.permute(0, 2, 3, 4, 1).reshape(-1, STRIP * width, half)
        columns = features[:, half:].reshape(images, half, height, width // STRIP, STRIP)
        columns = columns.permute(0, 3, 2, 4, 1).reshape(-1, height * STRIP, half)
        rows = self.self_attn1(rows).reshape(images, height * width, half)
        columns = self.self_attn2(columns).reshape(images, width // STRIP, height, STRIP, half)
        columns = columns.permute(0, 2, 1, 3, 4).reshape(images, height * width, half)
        tokens = features.permute(0, 2, 3, 1).reshape(images, height * width, channels)
        tokens = self.norm1(tokens + self.drop(torch.cat([rows, columns], dim=2)))
        tokens = self.norm2(tokens + self.drop(self.linear2(self.drop(F.relu(self.linear1(tokens))))))
        return tokens.reshape(images, height, width, channels).permute(0, 3, 1, 2)

    def drop(self, features: torch.Tensor) -> torch.Tensor:
        return F.dropout(features, self.dropout, self.training)


def conv_prelu(in_channels: int, out_channels: int, stride: int = 1) -> Tuple[nn.Module, nn.Module]:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.PReLU(out_channels)


class AEMatter(nn.Module):
    """forward(image N x 3 x H x W RGB on 0..1, trimap N x 3 x H x W one-hot) -> (alpha N x 1 x H x W
    in [0, 1], None); H and W multiples of 32. `backbone_depths` and `decoder_depth` other than
    Swin-T's (2, 2, 6, 2) and 3 give smaller networks of the same modules (tests). In training mode
    the published regularisation acts (BACKBONE_DROP_PATH, DECODER_DROP_PATHS, AEAL_DROPOUT); in
    eval mode it does nothing."""

    def __init__(self, backbone_depths: Tuple[int, ...] = (2, 2, 6, 2), decoder_depth: int = 3):
        super().__init__()
        self.start_conv0 = nn.Sequential(*conv_prelu(6, 48))
        self.start_conv = nn.Sequential(*conv_prelu(48, 64, 2), *conv_prelu(64, 64))
        self.trans = SwinBackbone(96, backbone_depths, drop_path_rate=BACKBONE_DROP_PATH)
        self.conv1 = nn.Sequential(nn.Conv2d(640 + 768, 256, 1))
        self.conv2 = nn.Sequential(nn.Conv2d(256 + 384, 256, 1))
        self.conv3 = nn.Sequential(nn.Conv2d(256 + 192, 192, 1))
        self.conv4 = nn.Sequential(nn.Conv2d(192 + 96, 128, 1))
        self.ctran0, self.ctran1, self.ctran2, self.ctran3 = (
            SwinStage(dim, decoder_depth, heads, drop_path=rate)
            for dim, heads, rate in zip((256, 256, 192, 128), (8, 8, 6, 4), DECODER_DROP_PATHS))
        self.conv5 = nn.Sequential(*conv_prelu(192, 64), *conv_prelu(64, 64), *conv_prelu(64, 48))
        self.convo = nn.Sequential(*conv_prelu(48 + 48 + 6, 32), *conv_prelu(32, 32), nn.Conv2d(32, 1, 3, 1, 1))
        self.apptrans = nn.Sequential(nn.Conv2d(256 + 384, 256, 1), ResBlock(256, 128), ResBlock(256, 128),
                                      nn.Conv2d(256, 512, 2, 2), ResBlock(512, 128))
        self.emb = nn.Sequential(nn.Conv2d(768, 640, 1), ResBlock(640, 160))
        self.embdp = nn.Sequential(nn.Conv2d(640, 640, 1))
        self.h2l = nn.Conv2d(768, 256, 1)
        self.trans1, self.trans2, self.trans3 = (AEALBlock(dropout=AEAL_DROPOUT) for _ in range(3))
        # full-resolution rows per stripe and window rows per Swin band: WHOLE, AUTO or a number
        self.stripe_rows, self.window_rows = AUTO, AUTO

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, None]:
        inputs = torch.cat((image, trimap), 1)
        rows = self.stripes(inputs)
        window_rows = WHOLE if rows == WHOLE else self.window_rows
        if rows == WHOLE:
            full = self.start_conv0(inputs)
            stem = self.start_conv(full)
        else:
            stem = self.striped_stem(inputs, rows)
        decoded = self.decode(stem, rows, window_rows)
        if rows == WHOLE:
            half = self.conv5(torch.cat((stem, upsample(decoded)), 1))
            alpha = self.convo(torch.cat((inputs, full, upsample(half)), 1))
        else:
            alpha = self.striped_tail(inputs, stem, decoded, rows)
        return alpha.clamp(0, 1), None

    def stripes(self, inputs: torch.Tensor) -> int:
        """Full-resolution rows per stripe (even), or WHOLE: when training, with gradients, or as set."""
        if self.training or torch.is_grad_enabled() or self.stripe_rows == WHOLE:
            return WHOLE
        rows = choose_stripe_rows(inputs.shape[3], self.stripe_rows, inputs.device, TAIL_BYTES_PER_PIXEL)
        return rows + rows % 2

    def decode(self, stem: torch.Tensor, rows: int, window_rows: int) -> torch.Tensor:
        """The backbone, AEAL and the decoder stages: the 128-channel 1/4-resolution map."""
        x1, x2, x3, x4 = self.trans(stem, window_rows)
        guidance = self.apptrans(torch.cat([x3, nearest_upsample(self.h2l(x4))], 1))
        features = self.ctran0.feature_map(self.conv1(torch.cat((x4, self.aeal(x4, guidance)), 1)), window_rows)
        for skip, join, stage in ((x3, self.conv2, self.ctran1), (x2, self.conv3, self.ctran2),
                                  (x1, self.conv4, self.ctran3)):
            features = stage.feature_map(self.join(join, skip, features, rows), window_rows)
        return features

    def aeal(self, features: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """The AEAL blocks on the 1/32 map, zero-padded to multiples of STRIP (the odd row or column
        at the bottom/right) and cropped back."""
        features = self.embdp(self.emb(features))
        height, width = features.shape[2:]
        extra_rows, extra_columns = -height % STRIP, -width % STRIP
        padding = (extra_columns // 2, extra_columns - extra_columns // 2, extra_rows // 2, extra_rows - extra_rows // 2)
        features, guidance = F.pad(features, padding), F.pad(guidance, padding)
        for block in (self.trans1, self.trans2, self.trans3):
            features = block(features, guidance)
        return features[:, :, padding[2]:padding[2] + height, padding[0]:padding[0] + width]

    @staticmethod
    def join(conv: nn.Module, skip: torch.Tensor, coarse: torch.Tensor, rows: int) -> torch.Tensor:
        """conv(skip ++ upsample(coarse)) (a 1 x 1 conv), `rows` rows of the output at a time
        (each with the coarse row above and below that the upsampling reads); WHOLE: at once."""
        if rows == WHOLE:
            return conv(torch.cat((skip, upsample(coarse)), 1))
        height = skip.shape[2]
        pieces = []
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            start, stop = with_context(top // 2, -(-bottom // 2), 1, coarse.shape[2], 1)
            fine = upsample(coarse[:, :, start:stop])[:, :, top - 2 * start:bottom - 2 * start]
            pieces.append(conv(torch.cat((skip[:, :, top:bottom], fine), 1)))
        return torch.cat(pieces, 2)

    def striped_stem(self, inputs: torch.Tensor, rows: int) -> torch.Tensor:
        """start_conv(start_conv0(inputs)) (1/2 resolution), rows / 2 of its rows at a time."""
        half_height, step = inputs.shape[2] // 2, rows // 2
        stem = None
        for top in range(0, half_height, step):
            bottom = min(top + step, half_height)
            start, stop = with_context(top, bottom, HALF_CONTEXT, half_height, 1)
            stripe = self.start_conv(self.start_conv0(inputs[:, :, 2 * start:2 * stop]))
            if stem is None:
                stem = stripe.new_empty(*stripe.shape[:2], half_height, stripe.shape[3])
            stem[:, :, top:bottom] = stripe[:, :, top - start:bottom - start]
        return stem

    def striped_tail(self, inputs: torch.Tensor, stem: torch.Tensor, decoded: torch.Tensor, rows: int) -> torch.Tensor:
        """The 1/2-resolution block and the full-resolution output convs, `rows` rows of the alpha
        at a time."""
        height = inputs.shape[2]
        alpha = inputs.new_empty(inputs.shape[0], 1, height, inputs.shape[3])
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            first, last = with_context(top, bottom, TAIL_CONTEXT, height)
            start, stop = with_context(first // 2, last // 2, HALF_CONTEXT, height // 2)
            half = self.conv5(torch.cat((stem[:, :, start:stop], upsample(decoded[:, :, start // 2:stop // 2])), 1))
            piece = inputs[:, :, first:last]
            full = upsample(half[:, :, first // 2 - start:last // 2 - start])
            stripe = self.convo(torch.cat((piece, self.start_conv0(piece), full), 1))
            alpha[:, :, top:bottom] = stripe[:, :, top - first:bottom - first]
        return alpha
