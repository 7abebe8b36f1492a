"""GCA-Matting's network: an encoder and a decoder chosen by name."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from networks.gca_matting.decoders import DECODERS
from networks.gca_matting.encoders import ENCODERS
from networks.gca_matting.gca import LITERAL, GuidedCxtAtten
from networks.stripes import AUTO, WHOLE, choose_stripe_rows, stripe_plan
from utils.recipe import Padding

# Peak bytes the tail keeps alive per full-resolution pixel in fp32, an estimate: a few
# 32-channel maps at full resolution and 64-channel ones at 1/2 alive at once.
TAIL_BYTES_PER_PIXEL = 640
# Rows of context (at 1/4 resolution) computed above and below each stripe and then dropped.
# A stripe's edge rows see zero padding where the image has data; through layer 4 (four 3 x 3
# convs after a 4 x 4 transposed one) and the head (transposed conv, 3 x 3 conv) the error
# reaches 10 full-resolution rows inward, less than the 16 dropped.
STRIPE_CONTEXT = 4
# demo.py's padding (GCA-Matting's demo recipe), the larger of the family's two.
DEMO_PADDING = Padding(multiple=32, margin=32)
# The memory one CPU fp32 inference needs beyond the loaded model, in the default forms (blocked
# attention, striped tail), from peaks measured on the CPU (README, "Out of memory"): a floor
# that covers 800x600 to 2560x1440 (0.36 to 1.40 GiB), plus, fitted to 3840x2160 (2.38 to 2.42
# GiB) and 5120x2880 (4.90 GiB) and rounded up, a rate per pixel and one per cell of the
# attention's row blocks (at least one row of the 1/16 grid against all its patches: width^2 x
# height cells). Beyond 5120x2880 it is an extrapolation.
INFERENCE_FLOOR_BYTES = int(1.5 * 2 ** 30)
INFERENCE_BYTES_PER_PIXEL = 0.15 * 2 ** 30 / 1e6
ATTENTION_BYTES_PER_ROW_CELL = 0.16 * 2 ** 30 / 1e6
# The striped forward's memory layout on the CPU: oneDNN's convolutions run faster on channels-last
# maps (measured at 1920x1080: 7.0 s against 8.2 s per image; its transposed convolutions 3x).
CPU_LAYOUT = torch.channels_last


def striped_layout(device: torch.device) -> torch.memory_format:
    """The memory format forward_striped computes in on `device`."""
    return CPU_LAYOUT if device.type == "cpu" else torch.contiguous_format


def joined(image: torch.Tensor, trimap: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """torch.cat((image, trimap), dim=1) made in `layout` at once (no second copy of the input)."""
    joint = torch.empty((image.shape[0], image.shape[1] + trimap.shape[1], *image.shape[2:]), dtype=image.dtype,
                        device=image.device, memory_format=layout)
    joint[:, :image.shape[1]] = image
    joint[:, image.shape[1]:] = trimap
    return joint


class Generator(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, trimap_channel: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.trimap_channel = trimap_channel
        self.stripe_rows = AUTO

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, Optional[Dict]]:
        """image N x 3 x H x W (normalised), trimap N x trimap_channel x H x W; H, W multiples of 32.
        Returns alpha N x 1 x H x W and, for GCA models, {offset_1, offset_2: (offsets, scales)}.

        In eval mode, images taller than a stripe run their full-resolution tail (decoder layer 4,
        head, and the two finest skip branches) a stripe of rows at a time: the same values within fp32 rounding,
        without the 32-channel full-resolution maps of the whole image."""
        if not self.training:  # training never stripes: BatchNorm needs the whole batch's statistics
            rows = choose_stripe_rows(image.shape[3], self.stripe_rows, image.device, TAIL_BYTES_PER_PIXEL)
            if rows != WHOLE and rows < image.shape[2]:
                return self.forward_striped(image, trimap)
        x = torch.cat((image, trimap), dim=1)
        embedding, mid_fea = self.encoder(x)
        return self.decoder(embedding, mid_fea)

    def inference_peak_bytes(self, height: int, width: int) -> Optional[int]:
        """Estimated memory (bytes, CPU, fp32) one height x width image needs beyond the loaded
        model; None where the published L x L attention or a whole-image tail is chosen, whose
        need grows faster than the measurements behind the estimate."""
        attention = [m for m in self.modules() if isinstance(m, GuidedCxtAtten)]
        if any(m.block == LITERAL for m in attention) or self.stripe_rows != AUTO:
            return None
        (top, bottom), (left, right) = DEMO_PADDING.sides(height), DEMO_PADDING.sides(width)
        grid_h, grid_w = (height + top + bottom) // 16, (width + left + right) // 16
        row_cells = grid_w * grid_w * grid_h if attention else 0
        need = height * width * INFERENCE_BYTES_PER_PIXEL + row_cells * ATTENTION_BYTES_PER_ROW_CELL
        return max(INFERENCE_FLOOR_BYTES, int(need))

    def forward_striped(self, image: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, Optional[Dict]]:
        """forward with the tail computed a stripe of full-resolution rows at a time, each stripe with
        at least STRIPE_CONTEXT rows of context at 1/4 resolution on both sides. The stripes are sized
        when the tail starts, to the memory left beside the trunk's features (within a --max-memory
        cap); the whole input's 6-channel copy is dropped after the trunk, each stripe's rows of it
        made again from `image` and `trimap`. On the CPU the maps are channels-last (striped_layout)."""
        layout = striped_layout(image.device)
        x = joined(image, trimap, layout)
        embedding, mid_fea, skip_inputs = self.encoder.trunk(x)
        shortcut = self.encoder.shortcut
        mid_fea["shortcut"] = (None, None) + tuple(branch(f) for branch, f in zip(shortcut[2:], skip_inputs[2:]))
        half = skip_inputs[1]
        del skip_inputs, x
        quarter, info = self.decoder.trunk(embedding, mid_fea)
        del mid_fea, embedding
        height, width = image.shape[2:]
        rows = choose_stripe_rows(width, self.stripe_rows, image.device, TAIL_BYTES_PER_PIXEL)
        alpha = image.new_empty(image.shape[0], 1, height, width)
        for top, bottom, first, last in stripe_plan(height, rows, STRIPE_CONTEXT):
            fea2 = shortcut[1](half[:, :, 2 * first:2 * last])
            full = joined(image[:, :, 4 * first:4 * last], trimap[:, :, 4 * first:4 * last], layout)
            fea1 = shortcut[0](full)
            stripe = self.decoder.tail(quarter[:, :, first:last], fea2, fea1)
            del fea1, fea2, full
            alpha[:, :, top:bottom] = stripe[:, :, top - 4 * first:bottom - 4 * first]
        return alpha, info


def _lookup(registry: Dict, name: str, key: str):
    if name not in registry:
        raise ValueError(f"unknown {key} {name!r}; choose one of: {', '.join(sorted(registry))}")
    return registry[name]


def build_generator(encoder: str, decoder: str, trimap_channel: int = 3) -> Generator:
    """Builds the generator from the names in `model.arch.encoder` / `model.arch.decoder`."""
    if trimap_channel not in (1, 3):
        raise ValueError(f"model.trimap_channel must be 1 or 3, got {trimap_channel!r}")
    if ("gca" in encoder) != ("gca" in decoder):
        raise ValueError(f"model.arch: encoder {encoder!r} and decoder {decoder!r} do not pair; "
                         "a GCA decoder needs the GCA encoder's guidance features and the reverse")
    build_encoder = _lookup(ENCODERS, encoder, "model.arch.encoder")
    build_decoder = _lookup(DECODERS, decoder, "model.arch.decoder")
    return Generator(build_encoder(trimap_channel), build_decoder(), trimap_channel)


def set_gca_block(model: nn.Module, block: int) -> None:
    """Queries per attention block in every GCA module: -1 the published L x L form, 0 automatic
    (blocks sized to the memory budget), N > 0 blocks of N queries (whole rows of the grid)."""
    if block < -1:
        raise ValueError(f"test.gca_block must be -1, 0 or a positive number of queries, got {block}")
    for module in model.modules():
        if isinstance(module, GuidedCxtAtten):
            module.block = block
