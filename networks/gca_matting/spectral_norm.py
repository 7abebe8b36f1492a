"""The spectral norm of GCA-Matting's released checkpoints (their key layout), which its encoders
and decoders wrap every convolution in."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def l2normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return v / (v.norm() + eps)


class SpectralNorm(nn.Module):
    """Spectral normalisation in the layout of the released GCA checkpoints.

    The wrapped conv keeps its child name ``module`` and its ``weight`` becomes three
    parameters ``weight_u``, ``weight_v``, ``weight_bar`` (registered in that order, as the
    checkpoints list them). The matrix is ``weight_bar`` reshaped to ``(dim0, -1)``: for a
    ConvTranspose2d dim 0 is ``in_channels``, which torch's built-in spectral_norm would not
    use, so the built-in cannot load these files.
    """

    def __init__(self, module: nn.Module, power_iterations: int = 1):
        super().__init__()
        self.module = module
        self.power_iterations = power_iterations
        weight = module.weight.data
        height, width = self.matrix(weight).shape
        u = nn.Parameter(l2normalize(weight.new_empty(height).normal_(0, 1)), requires_grad=False)
        v = nn.Parameter(l2normalize(weight.new_empty(width).normal_(0, 1)), requires_grad=False)
        del module._parameters["weight"]
        module.register_parameter("weight_u", u)
        module.register_parameter("weight_v", v)
        module.register_parameter("weight_bar", nn.Parameter(weight))

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight as the matrix whose largest singular value is sigma: rows of dim 0."""
        return weight.view(weight.shape[0], -1)

    def normalize(self, vector: torch.Tensor) -> torch.Tensor:
        return l2normalize(vector)

    def normalized_weight(self) -> torch.Tensor:
        """``W / sigma``; in training mode u and v first take one power-iteration step each."""
        u, v, w = self.module.weight_u, self.module.weight_v, self.module.weight_bar
        if self.training:
            with torch.no_grad():
                w_mat = self.matrix(w.detach())
                for _ in range(self.power_iterations):
                    v.copy_(self.normalize(torch.mv(w_mat.t(), u)))
                    u.copy_(self.normalize(torch.mv(w_mat, v)))
            # autograd keeps u and v for backward; the next training forward writes them in place
            u, v = u.clone(), v.clone()
        sigma = u.dot(self.matrix(w).mv(v))
        return w / sigma.expand_as(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.normalized_weight()
        conv = self.module
        if isinstance(conv, nn.ConvTranspose2d):
            return F.conv_transpose2d(x, weight, conv.bias, conv.stride, conv.padding,
                                      conv.output_padding, conv.groups, conv.dilation)
        return conv._conv_forward(x, weight, conv.bias)
