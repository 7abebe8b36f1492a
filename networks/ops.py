"""Layers and module surgery several families share: plain 3 x 3 / 1 x 1 convolutions, a BatchNorm
that normalises in place in inference, and replacing submodules by kind."""
from typing import Callable

import torch
import torch.nn as nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def replace_modules(model: nn.Module, kind: type, make: Callable[[nn.Module], nn.Module]) -> None:
    """Replaces every submodule that is a `kind` by make(it), in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, name, make(child))


class InPlaceBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (the same parameters, buffers and state-dict keys) that, in inference on the
    CPU (eval mode, no autograd, fp32, not being traced for export), normalises its input in place:
    the same values bit for bit, without a new map of the input's size (elsewhere, e.g. on a GPU,
    where torch may take cuDNN's kernel, it is nn.BatchNorm2d). At 3840x2160 a full-resolution
    32-channel map is 280 MB and a BatchNorm follows nearly every convolution, so the copies set
    the peak memory. Use it only where its input is a temporary that nothing else reads (the
    output of the convolution or activation before it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training or torch.is_grad_enabled() or x.device.type != "cpu" or self.running_mean is None
                or self.weight is None or x.dtype != self.weight.dtype or torch.compiler.is_compiling()
                or torch.jit.is_tracing()):
            return super().forward(x)
        empty = x.new_empty(0)
        return torch.ops.aten.native_batch_norm.out(x, self.weight, self.bias, self.running_mean, self.running_var,
                                                    False, 0.0, self.eps, out=x, save_mean=empty, save_invstd=empty)[0]
