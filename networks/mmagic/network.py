"""MMagic's GCA and baseline networks: GCA-Matting's modules with torch's spectral norm (whose
matrix of a ConvTranspose2d has the output channels as rows, dim 1) and MMagic's attention."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.gca_matting.gca import GuidedCxtAtten
from networks.gca_matting.generator import Generator, build_generator, set_gca_block
from networks.mmagic.attention import MMAGIC
from networks.gca_matting.spectral_norm import SpectralNorm
from networks.ops import replace_modules
from utils.config import ModelSpec

# torch.nn.utils.spectral_norm's epsilon, used as a floor on the norm in its power iteration.
TORCH_SPECTRAL_EPS = 1e-12


class TorchSpectralNorm(SpectralNorm):
    """Spectral normalisation as torch.nn.utils.spectral_norm computes it, in this project's key
    layout (module.weight_u, weight_v, weight_bar for torch's weight_u, weight_v, weight_orig):
    the matrix is the weight with dimension `dim` as its rows (1 for a ConvTranspose2d: a square
    one loads either way and gives a wrong sigma with rows of dim 0), and a power iteration
    normalises by max(||x||, eps)."""

    def __init__(self, module: nn.Module, power_iterations: int = 1):
        self.dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
        super().__init__(module, power_iterations)

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        if self.dim == 0:
            return weight.reshape(weight.shape[0], -1)
        order = [self.dim] + [d for d in range(weight.dim()) if d != self.dim]
        return weight.permute(*order).reshape(weight.shape[self.dim], -1)

    def normalize(self, vector: torch.Tensor) -> torch.Tensor:
        return F.normalize(vector, dim=0, eps=TORCH_SPECTRAL_EPS)

    @classmethod
    def replacing(cls, wrapper: SpectralNorm) -> "TorchSpectralNorm":
        """A TorchSpectralNorm around the conv `wrapper` held, whose u and v are re-drawn for torch's
        matrix (a checkpoint then sets all three)."""
        conv = wrapper.module
        weight = conv.weight_bar.data
        for name in ("weight_u", "weight_v", "weight_bar"):
            del conv._parameters[name]
        conv.weight = nn.Parameter(weight)
        return cls(conv, wrapper.power_iterations)


def build_mmagic_generator(spec: ModelSpec) -> Generator:
    """The network of MMagic's GCA (or baseline) configs named by spec's encoder and decoder."""
    options = spec.options
    network = build_generator(options.encoder, options.decoder, options.trimap_channel)
    replace_modules(network, SpectralNorm, TorchSpectralNorm.replacing)
    for module in network.modules():
        if isinstance(module, GuidedCxtAtten):
            module.variant = MMAGIC
    set_gca_block(network, options.gca_block)
    return network
