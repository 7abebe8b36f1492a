"""Deep Image Matting (Xu et al., CVPR 2017) as MMagic builds it: a VGG16 encoder on the image and
the trimap (4 channels) that keeps the positions of its five 2 x 2 max-poolings, a plain decoder
that puts its features back at those positions (max-unpooling) between 5 x 5 convolutions, the
alpha as the sigmoid of its output; and, for the refined models, a refiner of four 3 x 3
convolutions on the image and that alpha whose output is added to the decoder's in logit space.

Module names are those of MMagic's released files (below `backbone.` and `refiner.`).

In eval mode, images taller than a stripe run their full- and half-resolution layers (the
encoder's first two stages, the decoder's last two, the refiner) a stripe of rows at a time,
each with context rows above and below that are dropped: the same values within fp32 rounding, without the
64-channel full-resolution maps of the whole image."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.stripes import AUTO, WHOLE, choose_stripe_rows, stripe_plan

# (output channels, 3 x 3 convolutions) of VGG16's five stages, each followed by a 2 x 2 max-pooling.
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
# The decoder's 5 x 5 convolutions after each unpooling, from the coarsest: (in, out) channels.
DECODER_CONVS = (("deconv5_1", 512, 512), ("deconv4_1", 512, 256), ("deconv3_1", 256, 128),
                 ("deconv2_1", 128, 64), ("deconv1_1", 64, 64))
IN_CHANNELS = 4
REFINER_CHANNELS = 64
# The stripes' unit: the encoder's first two stages end at 1/4 resolution.
QUARTER = 4
# Rows of context (at 1/4 resolution) computed above and below each stripe and then dropped. A
# stripe's edge rows see zero padding where the image has data; through the first two encoder
# stages (two 3 x 3 convs at full resolution, two at 1/2) the error reaches 2 rows at 1/4 inward,
# and through the decoder's last two stages and the refiner (a 5 x 5 conv at 1/2, two at full
# resolution, four 3 x 3) 12 full-resolution rows: 3 at 1/4, fewer than the 4 dropped.
STRIPE_CONTEXT = 4
# Peak bytes a stripe keeps alive per full-resolution pixel in fp32, an estimate: three
# 64-channel maps at full resolution and their convolutions' working copies.
STRIPE_BYTES_PER_PIXEL = 1024

Indices = List[torch.Tensor]


def conv_stack(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    """`convs` 3 x 3 convolutions (zero padding 1), each followed by a ReLU: children 0, 2, 4 ..."""
    layers: List[nn.Module] = []
    for index in range(convs):
        layers += [nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def pool(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """2 x 2 max-pooling, stride 2, and the flat index (row x width + column in its plane) of
    each maximum."""
    return F.max_pool2d(x, 2, 2, return_indices=True)


def unpool(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Each value of x at the position `indices` gives in a plane twice its size, zeros elsewhere."""
    return F.max_unpool2d(x, indices, 2, 2)


def window_codes(indices: torch.Tensor, width: int) -> torch.Tensor:
    """Where in its 2 x 2 window each of `pool`'s maxima lies (row parity x 2 + column parity),
    as uint8: pool's indices in an eighth of their memory, and the same for a stripe that starts
    at an even row of the plane (`width` wide) as for the whole plane."""
    return (indices // width % 2 * 2 + indices % 2).to(torch.uint8)


def flat_indices(codes: torch.Tensor) -> torch.Tensor:
    """The flat indices in a plane twice the size of `codes` that window_codes came from."""
    height, width = codes.shape[2:]
    codes = codes.long()
    rows = 2 * torch.arange(height, device=codes.device).view(height, 1) + codes // 2
    return rows * (2 * width) + 2 * torch.arange(width, device=codes.device) + codes % 2


class VGG16Encoder(nn.Module):
    """VGG16's 13 convolutions (layer1 .. layer5) and a 1 x 1 conv6 with ReLU after the last
    pooling; 1/32 resolution, 512 channels, and the five poolings' indices."""

    def __init__(self, in_channels: int = IN_CHANNELS):
        super().__init__()
        for index, (channels, convs) in enumerate(VGG16_STAGES):
            self.add_module(f"layer{index + 1}", conv_stack(in_channels, channels, convs))
            in_channels = channels
        self.conv6 = nn.Conv2d(512, 512, 1)

    def stages(self) -> List[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4, self.layer5]

    def run(self, x: torch.Tensor, stages: List[nn.Sequential]) -> Tuple[torch.Tensor, Indices]:
        """x through `stages`, each pooled: the output and the indices, finest first."""
        indices = []
        for stage in stages:
            x, index = pool(stage(x))
            indices.append(index)
        return x, indices

    def head(self, x: torch.Tensor) -> Tuple[torch.Tensor, Indices]:
        """The full- and half-resolution stages: 1/4 resolution, 128 channels; two indices."""
        return self.run(x, self.stages()[:2])

    def trunk(self, x: torch.Tensor) -> Tuple[torch.Tensor, Indices]:
        """The rest from the head's output: the features and three indices."""
        x, indices = self.run(x, self.stages()[2:])
        return F.relu(self.conv6(x), inplace=True), indices

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Indices]:
        x, fine = self.head(x)
        features, coarse = self.trunk(x)
        return features, fine + coarse


class PlainDecoder(nn.Module):
    """A 1 x 1 conv, then five times an unpooling (the encoder's indices, coarsest first) and a
    5 x 5 conv, all with ReLU; a last 5 x 5 conv to the raw alpha (before the sigmoid)."""

    def __init__(self, in_channels: int = 512):
        super().__init__()
        self.deconv6_1 = nn.Conv2d(in_channels, 512, 1)
        for name, channels_in, channels_out in DECODER_CONVS:
            self.add_module(name, nn.Conv2d(channels_in, channels_out, 5, padding=2))
        self.deconv1 = nn.Conv2d(64, 1, 5, padding=2)

    def convs(self) -> List[nn.Conv2d]:
        return [getattr(self, name) for name, _, _ in DECODER_CONVS]

    def upsample(self, x: torch.Tensor, indices: Indices, convs: List[nn.Conv2d]) -> torch.Tensor:
        """x through unpooling with each index (coarsest first) and the conv that follows it."""
        for index, conv in zip(indices, convs):
            x = F.relu(conv(unpool(x, index)), inplace=True)
        return x

    def trunk(self, features: torch.Tensor, coarse: Indices) -> torch.Tensor:
        """The encoder's features and its three coarse indices (finest first) -> 1/4 resolution,
        128 channels."""
        x = F.relu(self.deconv6_1(features), inplace=True)
        return self.upsample(x, coarse[::-1], self.convs()[:3])

    def tail(self, x: torch.Tensor, fine: Indices) -> torch.Tensor:
        """The trunk's output and the two fine indices (finest first) -> the raw alpha."""
        return self.deconv1(self.upsample(x, fine[::-1], self.convs()[3:]))

    def forward(self, features: torch.Tensor, indices: Indices) -> torch.Tensor:
        return self.tail(self.trunk(features, indices[2:]), indices[:2])


class PlainRefiner(nn.Module):
    """Three 3 x 3 convs of 64 channels with ReLU and one to a single channel, on the normalised
    image and the predicted alpha; their output is added to the raw alpha before the sigmoid."""

    def __init__(self, channels: int = REFINER_CHANNELS):
        super().__init__()
        self.refine_conv1 = nn.Conv2d(4, channels, 3, padding=1)
        self.refine_conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.refine_conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.refine_pred = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, image: torch.Tensor, alpha: torch.Tensor, raw_alpha: torch.Tensor) -> torch.Tensor:
        x = torch.cat((image, alpha), dim=1)
        for conv in (self.refine_conv1, self.refine_conv2, self.refine_conv3):
            x = F.relu(conv(x), inplace=True)
        return torch.sigmoid(raw_alpha + self.refine_pred(x))


class DeepImageMatting(nn.Module):
    """network(image N x 3 x H x W normalised, trimap N x 1 x H x W grey / 255) -> (alpha, info),
    H and W multiples of 32; the alpha is the refined one where the network has a refiner. info
    is None in eval mode; in training mode {"decoder_alpha", "refined_alpha" (None without a
    refiner)}, the two predictions DIM's losses weigh (through forward, as DDP needs)."""

    def __init__(self, refine: bool):
        super().__init__()
        self.encoder = VGG16Encoder()
        self.decoder = PlainDecoder()
        self.refiner: Optional[PlainRefiner] = PlainRefiner() if refine else None
        self.stripe_rows = AUTO

    def finish(self, image: torch.Tensor, raw_alpha: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(the decoder's alpha, the refined alpha or None without a refiner)."""
        alpha = torch.sigmoid(raw_alpha)
        if self.refiner is None:
            return alpha, None
        return alpha, self.refiner(image, alpha, raw_alpha)

    def predictions(self, image: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(the decoder's alpha, the refined alpha or None) for the whole image at once."""
        features, indices = self.encoder(torch.cat((image, trimap), dim=1))
        return self.finish(image, self.decoder(features, indices))

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, Optional[Dict]]:
        if not self.training:
            rows = choose_stripe_rows(image.shape[3], self.stripe_rows, image.device, STRIPE_BYTES_PER_PIXEL)
            if rows != WHOLE and rows < image.shape[2]:
                return self.forward_striped(image, trimap, -(-rows // QUARTER) * QUARTER), None
        alpha, refined = self.predictions(image, trimap)
        info = {"decoder_alpha": alpha, "refined_alpha": refined} if self.training else None
        return (alpha if refined is None else refined), info

    def forward_striped(self, image: torch.Tensor, trimap: torch.Tensor, rows: int) -> torch.Tensor:
        """forward's alpha with the full- and half-resolution layers run `rows` full-resolution
        rows (a multiple of 4) at a time; the whole image's fine pooling indices are kept as
        window_codes meanwhile."""
        x = torch.cat((image, trimap), dim=1)
        height, width = x.shape[2:]
        plan = stripe_plan(height, rows, STRIPE_CONTEXT)
        quarter, fine_codes = self.head_striped(x, plan)
        del x
        features, coarse = self.encoder.trunk(quarter)
        del quarter
        quarter = self.decoder.trunk(features, coarse)
        del features, coarse
        alpha = image.new_empty(image.shape[0], 1, height, width)
        for top, bottom, first, last in plan:
            fine = [flat_indices(fine_codes[0][:, :, 2 * first:2 * last]), flat_indices(fine_codes[1][:, :, first:last])]
            raw_alpha = self.decoder.tail(quarter[:, :, first:last], fine)
            coarse_alpha, refined = self.finish(image[:, :, QUARTER * first:QUARTER * last], raw_alpha)
            stripe = coarse_alpha if refined is None else refined
            alpha[:, :, top:bottom] = stripe[:, :, top - QUARTER * first:bottom - QUARTER * first]
        return alpha

    def head_striped(self, x: torch.Tensor, plan: List[Tuple[int, int, int, int]]) -> Tuple[torch.Tensor, Indices]:
        """encoder.head's output for the whole image, computed stripe by stripe, and the
        window_codes of its two indices."""
        batch, _, height, width = x.shape
        channels = [channels for channels, _ in VGG16_STAGES[:2]]
        quarter = x.new_empty(batch, channels[1], height // QUARTER, width // QUARTER)
        codes = [torch.empty(batch, channels[0], height // 2, width // 2, dtype=torch.uint8, device=x.device),
                 torch.empty(batch, channels[1], height // QUARTER, width // QUARTER, dtype=torch.uint8,
                             device=x.device)]
        for top, bottom, first, last in plan:
            out, (half_index, quarter_index) = self.encoder.head(x[:, :, QUARTER * first:QUARTER * last])
            own = slice(top // QUARTER - first, bottom // QUARTER - first)
            quarter[:, :, top // QUARTER:bottom // QUARTER] = out[:, :, own]
            codes[0][:, :, top // 2:bottom // 2] = window_codes(half_index[:, :, 2 * own.start:2 * own.stop], width)
            codes[1][:, :, top // QUARTER:bottom // QUARTER] = window_codes(quarter_index[:, :, own], width // 2)
        return quarter, codes


def xavier_init(network: nn.Module) -> nn.Module:
    """MMagic's initialisation of DIM (mmcv's xavier_init defaults): every conv's weight Xavier
    normal (gain 1), its bias 0."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)
    return network
