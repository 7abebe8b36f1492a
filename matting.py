"""The Python API, for Python callers and the entry points (demo.py, app.py): a trained model of any
family loaded once, numpy in and numpy out, nothing read or written (Matter); an exported ONNX file in
its place (OnnxMatter); the trimaps that a model needing none predicts for one that needs them
(AutomaticTrimap). demo.py imports Matter, so `from demo import Matter` works too."""
import warnings
from typing import Optional, Tuple

import numpy as np
import torch

from networks.export import OnnxMatting, onnx_providers
from networks.families import RELEASED, config_for, family_of, load_config, load_configured, model_spec
from utils.checkpoint import CheckpointError
from utils.config import ConfigError, ModelSpec
from utils.cutouts.foreground import estimate_foreground, rgba_image
from utils.inference.predict import predict_alpha, predicted_trimap, runnable_precision
from utils.inference.preprocess import label_trimap_to_grey
from utils.memory import PeakEstimate, named_out_of_memory, preflight_warning
from utils.trimaps.from_mask import mask_problem, mask_to_trimap

TTA_NEEDS_PYTORCH = "--tta runs on PyTorch only; drop --tta or --onnx"
TRIMAP_SOURCES = ("semantic", "alpha")
TRIMAP_FROM_FORM = "CONFIG.toml:CHECKPOINT"
TRIMAP_FROM_EXAMPLE = "config/aim.toml:checkpoints/aim/aimnet_pretrained_matting.pth"


def pick_device(choice: str) -> torch.device:
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda asked for, but PyTorch sees no CUDA device; use cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def trimap_from_mask(mask: np.ndarray, unknown_width: Optional[int], source: str) -> np.ndarray:
    """The trimap of a binary or soft mask (utils.trimaps.from_mask); ValueError naming `source` for a mask
    with nothing to matte."""
    problem = mask_problem(mask)
    if problem:
        raise ValueError(f"{source}: {problem}")
    return mask_to_trimap(mask, unknown_width)


class Matter:
    """A trained model loaded once, for Python callers: numpy in, numpy out, nothing read or
    written. Images are RGB uint8 H x W x 3; trimaps grey 0/128/255 (or labels 0/1/2), masks
    binary or soft on the 0..255 scale, all H x W.

        matter = Matter("config/gca-dist-all-data.toml", "checkpoints/gca-dist-all-data/gca-dist-all-data.pth")
        matter = Matter(None, "gca-dist-all-data")              # a released model by name, with its config
        alpha = matter(image, trimap)                           # H x W uint8
        alpha = matter(image, mask=mask, unknown_width=10, tta="flip")
        rgba = matter.cutout(image, trimap)                     # H x W x 4 uint8, straight alpha

    A model that needs no trimap (config/aim.toml) takes the image alone: `matter(image)`.

    A trimap the network can do little with (see utils.recipe.Recipe.known_regions_warning) and an image the
    network's memory estimate says will not fit get a UserWarning (the warnings module).

    Errors: ConfigError, CheckpointError, ValueError (bad device, precision, sizes, masks),
    utils.memory.OutOfMemory (the image's size and the failed allocation named)."""

    def __init__(self, config: Optional[str], checkpoint: str, device: str = "auto", precision: str = "fp32"):
        """`checkpoint`: a file, or a released model's name (networks.families.checkpoint_path), whose
        config comes with it where `config` is None."""
        self.device = pick_device(device)
        self.precision = runnable_precision(precision, self.device)
        self.network, self.family, spec = load_configured(config, checkpoint)
        self.network.to(self.device)
        self.recipe = self.family.recipes(spec)[0]

    def peak_estimate(self) -> Optional[PeakEstimate]:
        """The network's own estimate of the memory one image needs, where its model family gives
        one (an `inference_peak_bytes(height, width)` method); CPU figures, so on the CPU only."""
        return getattr(self.network, "inference_peak_bytes", None) if self.device.type == "cpu" else None

    def predict_bgr(self, image_bgr: np.ndarray, trimap: Optional[np.ndarray], tta: str = "none",
                    precision: Optional[str] = None):
        """(uint8 alpha, the network's info) for a BGR image and a grey trimap (None for a model that
        takes none), as demo.py writes them; in `precision` where given (see runnable_precision), else
        the Matter's own."""
        precision = runnable_precision(precision, self.device) if precision else self.precision
        return predict_alpha(self.network, self.recipe, image_bgr, trimap, self.device, precision, tta)

    def trimap_for(self, image: np.ndarray, trimap: Optional[np.ndarray], mask: Optional[np.ndarray],
                   unknown_width: Optional[int]) -> Optional[np.ndarray]:
        """The grey trimap to run the image with (None for a model that takes none); ValueError for
        guides that do not fit the model or the image."""
        if not self.recipe.takes_trimap:
            if trimap is not None or mask is not None:
                raise ValueError(f"this model ({self.family.title}) predicts from the image alone: give no trimap "
                                 "or mask")
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"the image must be H x W x 3; got {image.shape}")
            return None
        if (trimap is None) == (mask is None):
            raise ValueError("give either a trimap or a mask")
        guide = trimap if trimap is not None else mask
        if image.ndim != 3 or image.shape[2] != 3 or guide.shape != image.shape[:2]:
            raise ValueError(f"the image must be H x W x 3 and the {'trimap' if mask is None else 'mask'} H x W of the "
                             f"same size; got {image.shape} and {guide.shape}")
        if mask is not None:
            return trimap_from_mask(mask, unknown_width, "mask")
        grey = label_trimap_to_grey(trimap)
        return trimap if grey is None else grey

    def __call__(self, image: np.ndarray, trimap: Optional[np.ndarray] = None, *, mask: Optional[np.ndarray] = None,
                 unknown_width: Optional[int] = None, tta: str = "none") -> np.ndarray:
        """The alpha matte, H x W uint8."""
        guide = self.trimap_for(image, trimap, mask, unknown_width)
        height, width = image.shape[:2]
        known = self.recipe.known_regions_warning(guide) if guide is not None else ""
        for warning in (known, preflight_warning(width, height, self.peak_estimate())):
            if warning:
                warnings.warn(warning, stacklevel=2)
        with named_out_of_memory("the image", width, height, self.peak_estimate()):
            return self.predict_bgr(np.ascontiguousarray(image[:, :, ::-1]), guide, tta)[0]

    def cutout(self, image: np.ndarray, trimap: Optional[np.ndarray] = None, *, mask: Optional[np.ndarray] = None,
               unknown_width: Optional[int] = None, tta: str = "none") -> np.ndarray:
        """The RGBA cutout, H x W x 4 uint8: estimated foreground colours, the alpha as predicted."""
        alpha = self(image, trimap, mask=mask, unknown_width=unknown_width, tta=tta)
        with named_out_of_memory("the image", alpha.shape[1], alpha.shape[0]):
            fg_bgr = estimate_foreground(np.ascontiguousarray(image[:, :, ::-1]), alpha)
        return np.ascontiguousarray(rgba_image(fg_bgr, alpha)[:, :, [2, 1, 0, 3]])


def takes_trimap(spec: ModelSpec) -> bool:
    """Whether the model needs a trimap (its family's recipe encodes one); ValueError for a family
    this project does not have."""
    return family_of(spec).recipes(spec)[0].takes_trimap


def parse_trimap_from(spec: str) -> Tuple[Optional[str], str]:
    """(config, checkpoint) from "CONFIG.toml:CHECKPOINT", or (None, a released model's name);
    ValueError naming the form."""
    if spec in RELEASED:
        return None, spec
    config, separator, checkpoint = spec.partition(".toml:")
    if not separator or not config or not checkpoint:
        raise ValueError(f"--trimap-from {spec}: give {TRIMAP_FROM_FORM}, the config and checkpoint of a model that "
                         f"needs no trimap, e.g. {TRIMAP_FROM_EXAMPLE}, or its released model's name (aim)")
    return config + ".toml", checkpoint


class AutomaticTrimap:
    """Trimaps for photos from a model that needs none (config/aim.toml), for models that need one:
    "semantic", the trimap that model's own fusion used (AIM's semantic map: 0 / 255 where it is sure,
    128 elsewhere), or "alpha", its alpha thresholded at half and banded as a mask is
    (utils.trimaps.from_mask.mask_to_trimap, `unknown_width`).

        automatic = AutomaticTrimap("config/aim.toml", "checkpoints/aim/aimnet_pretrained_matting.pth")
        alpha = Matter("config/gca-dist-all-data.toml", ...)(image, automatic(image))   # or source="alpha"

    Errors: ConfigError, CheckpointError, ValueError (a model that needs a trimap itself; a photo
    whose alpha is empty or full, for "alpha")."""

    def __init__(self, config: Optional[str], checkpoint: str, device: str = "auto", precision: str = "fp32"):
        config = config_for(checkpoint, config)
        spec = model_spec(load_config(config))
        if takes_trimap(spec):
            raise ValueError(f"{config}: its model ({family_of(spec).title}) needs a trimap itself; give the "
                             f"config of a model that predicts from the photo alone, e.g. {TRIMAP_FROM_EXAMPLE}")
        self.matter = Matter(config, checkpoint, device, precision)

    def predict_bgr(self, image_bgr: np.ndarray, source: str = "semantic",
                    unknown_width: Optional[int] = None) -> np.ndarray:
        """The grey trimap (0 / 128 / 255) for a BGR photo."""
        if source not in TRIMAP_SOURCES:
            raise ValueError(f"the trimap source must be one of {', '.join(TRIMAP_SOURCES)}, got {source!r}")
        alpha, info = self.matter.predict_bgr(image_bgr, None)
        if source == "alpha":
            return trimap_from_mask(alpha, unknown_width, "the automatic trimap's alpha")
        trimap = predicted_trimap(info)
        if trimap is None:
            raise ValueError(f"{self.matter.family.title} gives no trimap of its own; use the alpha source")
        return trimap

    def __call__(self, image: np.ndarray, source: str = "semantic", unknown_width: Optional[int] = None) -> np.ndarray:
        """The grey trimap for an RGB photo, H x W uint8."""
        return self.predict_bgr(np.ascontiguousarray(image[:, :, ::-1]), source, unknown_width)


def trimap_model(spec: str, device: str = "auto", precision: str = "fp32") -> AutomaticTrimap:
    """The AutomaticTrimap a --trimap-from value names; ValueError naming the flag and what is wrong."""
    config, checkpoint = parse_trimap_from(spec)
    try:
        return AutomaticTrimap(config, checkpoint, device, precision)
    except (ConfigError, CheckpointError, ValueError) as e:
        raise ValueError(f"--trimap-from {spec}: {e}") from None


class OnnxMatter:
    """Matter.predict_bgr through an exported file (networks.export) on onnxruntime: the alpha
    as demo.py writes it, no network info (so no offsets)."""

    def __init__(self, path: str, device: str = "auto"):
        self.matting = OnnxMatting(path, onnx_providers(device))
        self.recipe = self.matting.recipe

    def peak_estimate(self) -> None:
        """None: onnxruntime's own out-of-memory error names the image (networks.export)."""
        return None

    def predict_bgr(self, image_bgr: np.ndarray, trimap: np.ndarray, tta: str = "none") -> Tuple[np.ndarray, None]:
        if tta != "none":
            raise ValueError(TTA_NEEDS_PYTORCH)
        return self.matting(np.ascontiguousarray(image_bgr[:, :, ::-1]), trimap), None
