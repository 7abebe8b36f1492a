"""The form of a network that torch.export captures for any image size and onnxruntime runs in
less memory: rewrites every family's export can use (networks.export runs the family's form,
Family.export), and scan_rows, a loop over rows that the export captures as an ONNX Scan."""
import copy
from typing import Callable, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._higher_order_ops.scan import scan

from networks.ops import replace_modules
from networks.stripes import WHOLE

Rewrite = Tuple[type, Callable[[nn.Module], nn.Module]]


# ConvTranspose2d(kernel 4, stride 2, padding 1): output row 2y + phase takes input rows
# y + offset through kernel row tap, for these (phase, offset): tap.
PHASE_TAPS = {(0, 0): 1, (0, -1): 3, (1, 1): 0, (1, 0): 2}


class PhasedConvTranspose(nn.Module):
    """A ConvTranspose2d(kernel 4, stride 2, padding 1) as a 3 x 3 convolution to the four
    output phases followed by a pixel shuffle: the same sums of the same products, in another
    order. onnxruntime's CPU ConvTranspose fills a column buffer of 16 x C_out floats per input
    pixel, 4.5 GB for the full-resolution layer at 3840x2160; this form needs none (measured
    at 2560x1440: 2.3 GiB peak instead of 5.1, same speed)."""

    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        weight = conv.weight.detach()
        in_channels, out_channels = weight.shape[:2]
        phased = weight.new_zeros(out_channels, 2, 2, in_channels, 3, 3)
        for (row_phase, row_offset), row_tap in PHASE_TAPS.items():
            for (column_phase, column_offset), column_tap in PHASE_TAPS.items():
                phased[:, row_phase, column_phase, :, row_offset + 1, column_offset + 1] = \
                    weight[:, :, row_tap, column_tap].t()
        self.weight = nn.Parameter(phased.reshape(4 * out_channels, in_channels, 3, 3), requires_grad=False)
        bias = None if conv.bias is None else conv.bias.detach().repeat_interleave(4)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=1), 2)


def _phased(conv: nn.ConvTranspose2d) -> nn.Module:
    """PhasedConvTranspose where it applies, else the conv unchanged."""
    plain = (conv.kernel_size, conv.stride, conv.padding, conv.output_padding, conv.dilation, conv.groups)
    return PhasedConvTranspose(conv) if plain == ((4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1) else conv


def exportable_copy(network: nn.Module, *rewrites: Rewrite) -> nn.Module:
    """An eval-mode copy computing the same alpha in exportable form: each (kind, make) of
    `rewrites` replacing the modules of that kind, in order, then PhasedConvTranspose upsampling
    and the network unstriped (a stripe count is Python-level). Modules a network does not have
    are left alone."""
    network = copy.deepcopy(network).eval()
    for kind, make in rewrites:
        replace_modules(network, kind, make)
    replace_modules(network, nn.ConvTranspose2d, _phased)
    if hasattr(network, "stripe_rows"):
        network.stripe_rows = WHOLE
    return network


def scan_rows(step: Callable, carry: torch.Tensor, rows: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, torch.Tensor]:
    """torch's scan while torch.export captures it (it becomes an ONNX Scan), else a Python loop
    over the same step: eager scan compiles itself on every call, seconds for a small image."""
    if torch.compiler.is_exporting():
        return scan(step, carry, rows)
    outputs = []
    for row in zip(*rows):
        carry, output = step(carry, row)
        outputs.append(output)
    return carry, torch.stack(outputs)
