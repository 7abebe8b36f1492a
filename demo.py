"""Predict alpha mattes for a folder of images and trimaps with a trained model of any family the
config names (GCA-Matting, MMagic's GCA / baseline / DIM, AEMatter, AIM).

python demo.py --config config/gca-dist-all-data.toml \
    --checkpoint checkpoints/gca-dist-all-data/gca-dist-all-data.pth \
    --image-dir demo/input_lowres --trimap-dir demo/trimap_lowres/Trimap3 --output demo/pred/Trimap3/

Writes <stem>.png (the alpha) and <stem>_offset1.png, <stem>_offset2.png (unless --no-offset) per
image into <output>/<version>_<checkpoint file name>/; with --cutout also <stem>_fg.png (foreground
colours) and <stem>_rgba.png, with --background SPEC <stem>_composite.png, with --mask-dir the
<stem>_trimap.png made from the mask. A model that needs no trimap (config/aim.toml) takes --image-dir
alone; --trimap-from CONFIG.toml:CHECKPOINT gives any other model the trimap such a model predicts,
written as <stem>_trimap.png too. With --onnx FILE.onnx (python -m networks.export) the
folder runs through onnxruntime instead of PyTorch into <output>/onnx_<file name>/: the same
alphas, no offset images; --config and --checkpoint are then not read. Trimaps are grey 0 / 128 /
255 (GCA-Matting's models read < 85 as background and >= 170 as foreground, the other families
the exact greys) or labels 0/1/2. An image that cannot be processed
or written, or whose outputs would clash with another image's, is named and skipped; the rest
goes on, and the exit code is then 1.

From Python, `Matter` loads a model once and predicts numpy arrays without touching the disk.
"""
import argparse
import os
import sys
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch

from networks.export import ExportError, OnnxMatting, onnx_providers
from networks.families import family_of, load_config, load_configured, model_spec
from networks.gca_matting.flow_vis import gca_offset_pictures
from utils.allocator import reuse_freed_memory
from utils.io.batch import (COMPOSITE_SUFFIX, CUTOUT_SUFFIXES, OFFSET_SUFFIXES, TRIMAP_SUFFIX, check_same_size,
                            drop_clashing, is_inside, pair_by_stem, process_pairs, report_failures, write_all)
from utils.checkpoint import CheckpointError
from utils.config import ConfigError, ModelSpec
from utils.extras import MissingExtraError
from utils.cutouts.foreground import (Background, composite, estimate_foreground, parse_background, require_pymatting,
                                      rgba_image)
from utils.io.images import IMAGE_EXTENSIONS, ImageReadError, list_images, read_grey, read_image, stem
from utils.inference.predict import TTA_MODES, check_precision, predict_alpha, predicted_trimap
from utils.memory import PeakEstimate, named_out_of_memory, preflight_warning
from utils.inference.preprocess import label_trimap_to_grey
from utils.recipe import ImageSizeError, Recipe
from utils.trimaps.from_mask import mask_problem, mask_to_trimap


DEFAULT_IMAGE_DIR, DEFAULT_TRIMAP_DIR = "demo/input_lowres", "demo/trimap_lowres/Trimap3"  # the published demo's
TTA_NEEDS_PYTORCH = "--tta runs on PyTorch only; drop --tta or --onnx"
TRIMAP_SOURCES = ("semantic", "alpha")
TRIMAP_FROM_FORM = "CONFIG.toml:CHECKPOINT"
TRIMAP_FROM_EXAMPLE = "config/aim.toml:checkpoints/aim/aimnet_pretrained_matting.pth"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/gca-dist-all-data.toml")
    parser.add_argument("--checkpoint", default="checkpoints/gca-dist-all-data/gca-dist-all-data.pth",
                        help="path of checkpoint")
    parser.add_argument("--image-dir", default=None, help=f"input image dir (default {DEFAULT_IMAGE_DIR})")
    parser.add_argument("--trimap-dir", default=None,
                        help=f"input trimap dir (default {DEFAULT_TRIMAP_DIR}); trimaps are matched to images "
                             "by file stem and are grey (0 / 128 / 255) or labels 0 / 1 / 2")
    parser.add_argument("--mask-dir", default=None,
                        help="instead of --trimap-dir: binary or soft masks (by file stem), made into trimaps "
                             "(see --unknown-width); the trimap used is written as <name>_trimap.png")
    parser.add_argument("--trimap-from", metavar=TRIMAP_FROM_FORM,
                        help="instead of --trimap-dir: the trimaps predicted by a model that needs none, given by "
                             f"its config and checkpoint (e.g. {TRIMAP_FROM_EXAMPLE}); written as "
                             "<name>_trimap.png")
    parser.add_argument("--trimap-source", choices=TRIMAP_SOURCES, default=None,
                        help="with --trimap-from: semantic (default), the trimap that model's own fusion used; or "
                             "alpha, its alpha thresholded at half and banded as --mask-dir does (see "
                             "--unknown-width)")
    parser.add_argument("--unknown-width", type=int, default=None, metavar="PX",
                        help="with --mask-dir or --trimap-source alpha: the unknown band reaches PX pixels into and "
                             "out of the mask (default: 1%% of the image diagonal, at least 3)")
    parser.add_argument("--output", default="demo/pred/Trimap3/",
                        help="output dir (created if missing); results go to a <version>_<checkpoint> folder in it")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when available, else CPU")
    parser.add_argument("--no-offset", action="store_true", help="do not write the GCA offset images")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="bf16 / fp16 run the convolutions in reduced precision (fp16: CUDA only); "
                             "GCA's attention stays fp32")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="test-time augmentation: flip (the image and its mirror) or d8 (4 rotations x 2 flips), "
                             "averaged before the conversion to 8 bits; d8-uint8: the d8 views each converted to 8 "
                             "bits, averaged and truncated (AEMatter's eval_tta.py)")
    parser.add_argument("--cutout", action="store_true",
                        help="also write <name>_fg.png (foreground colours, needs requirements-cutout.txt) and "
                             "<name>_rgba.png")
    parser.add_argument("--onnx", metavar="FILE.onnx",
                        help="run this exported model (python -m networks.export) on onnxruntime instead of PyTorch: "
                             "the same alphas, no offset images, fp32, no --tta; --config and --checkpoint are not "
                             "read (needs requirements-export.txt)")
    parser.add_argument("--background", metavar="SPEC",
                        help="also write <name>_composite.png over this background (implies --cutout): a colour "
                             "(#00ff00, 0,255,0, white) or an image file (scaled to cover, centre-cropped)")
    return parser.parse_args(argv)


def pick_device(choice: str) -> torch.device:
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda asked for, but PyTorch sees no CUDA device; use cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def output_folder_problem(output: str, save_dir: str) -> Optional[str]:
    """Why save_dir cannot be created or written, or None. It creates nothing, so a run refused
    later (a bad checkpoint, no images) leaves no empty folder behind."""
    existing = os.path.abspath(save_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return (f"--output {output}: {existing} is a file, not a folder; "
                "give --output a folder path (missing folders are created)")
    if not os.access(existing, os.W_OK | os.X_OK):
        return (f"--output {output}: cannot write in {existing} (permission denied); "
                "choose an --output folder you can write to")
    return None


@dataclass
class Outputs:
    """Which results an image gets, besides its alpha."""
    offsets: bool = True
    trimap: bool = False  # the trimap made from a mask or by another model
    cutout: bool = False
    composite: bool = False

    def names(self, image_path: str) -> List[str]:
        """The file names an image's results are written under, in the order process_one makes them."""
        suffixes = [""] + (list(OFFSET_SUFFIXES) if self.offsets else []) + ([TRIMAP_SUFFIX] if self.trimap else [])
        suffixes += (list(CUTOUT_SUFFIXES) if self.cutout else []) + ([COMPOSITE_SUFFIX] if self.composite else [])
        return [f"{stem(image_path)}{suffix}.png" for suffix in suffixes]


def grey_trimap(trimap: np.ndarray, source: str, recipe: Recipe) -> np.ndarray:
    """A 0/1/2 label trimap mapped to grey with a note; a warning when the recipe leaves the network
    nothing or too little to work with (Recipe.known_regions_warning)."""
    grey = label_trimap_to_grey(trimap)
    if grey is not None:
        print(f"note: {source}: read as a 0/1/2 label trimap", file=sys.stderr)
        trimap = grey
    warning = recipe.known_regions_warning(trimap)
    if warning:
        print(f"warning: {source}: {warning}", file=sys.stderr)
    return trimap


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
        alpha = matter(image, trimap)                           # H x W uint8
        alpha = matter(image, mask=mask, unknown_width=10, tta="flip")
        rgba = matter.cutout(image, trimap)                     # H x W x 4 uint8, straight alpha

    A model that needs no trimap (config/aim.toml) takes the image alone: `matter(image)`.

    A trimap the network can do little with (see utils.recipe.Recipe.known_regions_warning) and an image the
    network's memory estimate says will not fit get a UserWarning (the warnings module).

    Errors: ConfigError, CheckpointError, ValueError (bad device, precision, sizes, masks),
    utils.memory.OutOfMemory (the image's size and the failed allocation named)."""

    def __init__(self, config: str, checkpoint: str, device: str = "auto", precision: str = "fp32"):
        self.device = pick_device(device)
        check_precision(precision, self.device)
        self.precision = precision
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
        takes none), as demo.py writes them; in `precision` where given (see check_precision), else
        the Matter's own."""
        return predict_alpha(self.network, self.recipe, image_bgr, trimap, self.device, precision or self.precision,
                             tta)

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


def parse_trimap_from(spec: str) -> Tuple[str, str]:
    """(config, checkpoint) from "CONFIG.toml:CHECKPOINT"; ValueError naming the form."""
    config, separator, checkpoint = spec.partition(".toml:")
    if not separator or not config or not checkpoint:
        raise ValueError(f"--trimap-from {spec}: give {TRIMAP_FROM_FORM}, the config and checkpoint of a model that "
                         f"needs no trimap, e.g. {TRIMAP_FROM_EXAMPLE}")
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

    def __init__(self, config: str, checkpoint: str, device: str = "auto", precision: str = "fp32"):
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


def onnx_problem(args: argparse.Namespace) -> Optional[str]:
    """Why the flags do not go with --onnx, or None."""
    if args.tta != "none":
        return TTA_NEEDS_PYTORCH
    if args.precision != "fp32":
        return "--onnx runs the exported fp32 graph; drop --precision or --onnx"
    return None


TrimapOf = Callable[[np.ndarray, str, Optional[str]], Optional[np.ndarray]]


def read_trimap(recipe: Recipe, image: np.ndarray, image_path: str, trimap_path: str) -> np.ndarray:
    """The image's trimap file, grey (a label trimap mapped, with a note)."""
    trimap = read_grey(trimap_path)
    check_same_size(image, trimap, image_path, trimap_path, "trimap")
    return grey_trimap(trimap, trimap_path, recipe)


def mask_trimap(recipe: Recipe, unknown_width: Optional[int], image: np.ndarray, image_path: str,
                mask_path: str) -> np.ndarray:
    """The trimap of the image's mask file (with grey_trimap's warning); a mask with nothing to matte
    is named."""
    mask = read_grey(mask_path)
    check_same_size(image, mask, image_path, mask_path, "mask")
    try:
        trimap = trimap_from_mask(mask, unknown_width, mask_path)
    except ValueError as e:
        raise ImageReadError(str(e)) from None
    return grey_trimap(trimap, mask_path, recipe)


def automatic_trimap(automatic: AutomaticTrimap, recipe: Recipe, source: str, unknown_width: Optional[int],
                     image: np.ndarray, image_path: str, guide_path: None = None) -> np.ndarray:
    """The trimap another model predicts for the image; a photo it finds nothing in is named."""
    try:
        trimap = automatic.predict_bgr(image, source, unknown_width)
    except (ValueError, FloatingPointError) as e:
        raise ImageReadError(f"{image_path}: {e}") from None
    return grey_trimap(trimap, f"the automatic trimap of {image_path}", recipe)


def no_trimap(image: np.ndarray, image_path: str, guide_path: None = None) -> None:
    return None


def process_one(matter: Union[Matter, OnnxMatter], image_path: str, guide_path: Optional[str], save_dir: str,
                outputs: Outputs, trimap_of: TrimapOf = no_trimap, tta: str = "none",
                background: Optional[Background] = None) -> None:
    """Predicts one image and writes its results (all or none); `guide_path` is its trimap or mask
    file (None where trimaps are predicted or the model takes none), which trimap_of(image,
    image_path, guide_path) makes the trimap (or None) from."""
    image = read_image(image_path)
    trimap = trimap_of(image, image_path, guide_path)
    height, width = image.shape[:2]
    warning = preflight_warning(width, height, matter.peak_estimate())
    if warning:
        print(f"warning: {image_path}: {warning}", file=sys.stderr)
    with named_out_of_memory(image_path, width, height, matter.peak_estimate()):
        alpha, info = matter.predict_bgr(image, trimap, tta)
        offsets = gca_offset_pictures(info) if outputs.offsets else []
        pictures = [alpha] + offsets
        if outputs.trimap:
            pictures.append(trimap)
        if outputs.cutout:
            foreground = estimate_foreground(image, alpha)
            pictures += [foreground, rgba_image(foreground, alpha)]
        if outputs.composite:
            pictures.append(composite(foreground, alpha, background.fill(*alpha.shape)))
    names = outputs.names(image_path)
    if outputs.offsets and not offsets:  # a model without GCA has no offsets
        names = [n for n in names if not n.endswith(tuple(f"{suffix}.png" for suffix in OFFSET_SUFFIXES))]
    write_all([os.path.join(save_dir, name) for name in names], pictures)


GUIDE_FLAGS = {"trimap": "--trimap-dir", "mask": "--mask-dir", "automatic": "--trimap-from"}


def takes_trimap(spec: ModelSpec) -> bool:
    """Whether the model needs a trimap (its family's recipe encodes one); ValueError for a family
    this project does not have."""
    return family_of(spec).recipes(spec)[0].takes_trimap


def guide_kind(args: argparse.Namespace, needs_trimap: bool) -> str:
    """Where each image's trimap comes from: 'trimap' (files), 'mask' (files made into trimaps),
    'automatic' (--trimap-from) or 'none' (the model takes none); ValueError for flags that do not go
    together or with the model."""
    given = [kind for kind, value in (("mask", args.mask_dir), ("trimap", args.trimap_dir),
                                      ("automatic", args.trimap_from)) if value]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(GUIDE_FLAGS[kind] for kind in given)} {'both' if len(given) == 2 else 'all'} "
                         "given; give one way to the trimaps (masks and --trimap-from are made into trimaps)")
    if not needs_trimap and given:
        raise ValueError(f"{args.config}: its model predicts from the photo alone; drop {GUIDE_FLAGS[given[0]]}")
    kind = given[0] if given else ("trimap" if needs_trimap else "none")
    if args.trimap_source is not None and kind != "automatic":
        raise ValueError("--trimap-source goes with --trimap-from")
    banded = kind == "mask" or (kind == "automatic" and args.trimap_source == "alpha")
    if args.unknown_width is not None and not banded:
        raise ValueError("--unknown-width goes with --mask-dir or --trimap-source alpha")
    if args.unknown_width is not None and args.unknown_width < 1:
        raise ValueError(f"--unknown-width must be at least 1 pixel, got {args.unknown_width}")
    return kind


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        config = None if args.onnx else load_config(args.config)
        # An exported graph always takes a trimap (the export refuses families that take none).
        kind = guide_kind(args, config is None or takes_trimap(model_spec(config)))
        if kind == "automatic":
            parse_trimap_from(args.trimap_from)
        problem = onnx_problem(args) if args.onnx else None
        if problem:
            raise ValueError(problem)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        background = parse_background(args.background) if args.background else None
    except ValueError as e:
        print(f"error: --background {e}", file=sys.stderr)
        return 2
    outputs = Outputs(offsets=not args.no_offset, trimap=kind in ("mask", "automatic"),
                      cutout=args.cutout or background is not None, composite=background is not None)
    guide_dir = {"trimap": args.trimap_dir or DEFAULT_TRIMAP_DIR, "mask": args.mask_dir}.get(kind)
    flag = GUIDE_FLAGS.get(kind)
    given = {"--image-dir": args.image_dir, flag: args.trimap_dir or args.mask_dir}
    args.image_dir = args.image_dir or DEFAULT_IMAGE_DIR
    folders = [("--image-dir", args.image_dir)] + ([(flag, guide_dir)] if guide_dir else [])
    for name, folder in folders:
        if not os.path.isdir(folder):
            hint = "" if given[name] else " (the published demo's default); give --image-dir and --trimap-dir or --mask-dir"
            print(f"error: {name} {folder} is not a folder{hint}", file=sys.stderr)
            return 2
    save_dir = os.path.join(args.output, f"onnx_{os.path.basename(args.onnx)}" if args.onnx
                            else f"{config.version}_{os.path.basename(args.checkpoint)}")
    for _, folder in folders:
        if is_inside(save_dir, folder):
            print(f"error: output folder {save_dir} lies inside the input folder {folder}; "
                  "choose an --output outside it so predictions do not mix with the inputs", file=sys.stderr)
            return 2
    problem = output_folder_problem(args.output, save_dir)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        if outputs.cutout:
            require_pymatting()
        matter = (OnnxMatter(args.onnx, args.device) if args.onnx
                  else Matter(args.config, args.checkpoint, args.device, args.precision))
        automatic = trimap_model(args.trimap_from, args.device, args.precision) if kind == "automatic" else None
    except (ConfigError, CheckpointError, MissingExtraError, ExportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    trimap_of = {"trimap": partial(read_trimap, matter.recipe), "mask": partial(mask_trimap, matter.recipe, args.unknown_width),
                 "automatic": partial(automatic_trimap, automatic, matter.recipe, args.trimap_source or "semantic",
                                      args.unknown_width), "none": no_trimap}[kind]
    if guide_dir:
        pairs, problems = pair_by_stem(args.image_dir, guide_dir, kind)
    else:
        pairs, problems = [(os.path.join(args.image_dir, name), None) for name in list_images(args.image_dir)], []
    if not pairs and not problems:
        print(f"error: no images ({', '.join(IMAGE_EXTENSIONS)}) in {args.image_dir}", file=sys.stderr)
        return 2
    total = len(pairs) + len(problems)
    pairs, clashes = drop_clashing(pairs, outputs.names)
    problems += clashes
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as e:
        print(f"error: --output {args.output}: {save_dir} cannot be created ({e.strerror or e}); "
              "choose another --output folder", file=sys.stderr)
        return 2
    process = partial(process_one, matter, save_dir=save_dir, outputs=outputs, trimap_of=trimap_of, tta=args.tta,
                      background=background)
    done = process_pairs(pairs, process, "demo", problems,
                         unnamed_errors=(FloatingPointError, ExportError, ImageSizeError))
    print(f"{done} of {total} images written to {save_dir}")
    return report_failures(total - done, total, problems)


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
