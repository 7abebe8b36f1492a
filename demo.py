"""Predict alpha mattes for a folder of images and trimaps with a trained model of any family the
config names (GCA-Matting, MMagic's GCA / baseline / DIM, AEMatter, AIM).

python demo.py --config config/gca-dist-all-data.toml \
    --checkpoint checkpoints/gca-dist-all-data/gca-dist-all-data.pth \
    --image-dir demo/input_lowres --trimap-dir demo/trimap_lowres/Trimap3 --output demo/pred/Trimap3/
python demo.py --checkpoint aim --image-dir PHOTOS --output OUT --cutout   # a released model by name

--checkpoint takes a file or a released model's name (python -m networks.models lists them): the
file where the docs say to put it, else the cached copy, else downloaded, checked and cached; its
config comes with the name unless --config is given.

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
goes on, and the exit code is then 1. Ctrl-C or SIGTERM stops the run with one line (how many
images are written, each whole) and exit code 130 / 143; the same command with --resume then
skips the images whose files are all there.

torchrun --nproc_per_node=N demo.py ... splits the folder over N processes (gloo on the CPU, NCCL
on GPUs; --nnodes too); rank 0 prints the one summary (utils.io.shards, docs/inference.md).

From Python, `Matter` (matting.py) loads a model once and predicts numpy arrays without touching the disk.
"""
import argparse
import os
import sys
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from matting import (TRIMAP_FROM_EXAMPLE, TRIMAP_FROM_FORM, TRIMAP_SOURCES, TTA_NEEDS_PYTORCH, AutomaticTrimap, Matter,
                     OnnxMatter, parse_trimap_from, takes_trimap, trimap_from_mask, trimap_model)
from networks.export import ExportError
from networks.families import config_for, load_config, model_spec
from utils.inference.offset_pictures import offset_pictures
from utils.allocator import reuse_freed_memory
from utils.io.batch import (AGAIN, COMPOSITE_SUFFIX, CUTOUT_SUFFIXES, OFFSET_SUFFIXES, RESUME, TRIMAP_SUFFIX, Tally,
                            check_same_size, drop_clashing, is_inside, pair_by_stem, write_all)
from utils.io.shards import ShardedFolder, join_ranks
from utils.distributed import DistInfo, cleanup
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.extras import MissingExtraError
from utils.cutouts.foreground import (Background, composite, estimate_foreground, parse_background, require_pymatting,
                                      rgba_image)
from utils.io.images import IMAGE_EXTENSIONS, ImageReadError, list_images, read_grey, read_image, stem
from utils.inference.predict import TTA_MODES
from utils.memory import named_out_of_memory, preflight_warning, set_memory_cap
from utils.inference.preprocess import label_trimap_to_grey
from utils.recipe import ImageSizeError, Recipe
from utils.signals import run_until_stopped


DEFAULT_IMAGE_DIR, DEFAULT_TRIMAP_DIR = "demo/input_lowres", "demo/trimap_lowres/Trimap3"  # the published demo's
DEFAULT_CONFIG = "config/gca-dist-all-data.toml"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None,
                        help=f"the model's config (default: the released model's where --checkpoint names one, else "
                             f"{DEFAULT_CONFIG})")
    parser.add_argument("--checkpoint", default="gca-dist-all-data",
                        help="a checkpoint file, or a released model's name (python -m networks.models lists them; "
                             "fetched and cached on first use); default gca-dist-all-data")
    parser.add_argument("--image-dir", default=None, help=f"input image dir (default {DEFAULT_IMAGE_DIR})")
    parser.add_argument("--trimap-dir", default=None,
                        help=f"input trimap dir (default {DEFAULT_TRIMAP_DIR}); trimaps are matched to images "
                             "by file stem and are grey (0 / 128 / 255) or labels 0 / 1 / 2")
    parser.add_argument("--mask-dir", default=None,
                        help="instead of --trimap-dir: binary or soft masks (by file stem), made into trimaps "
                             "(see --unknown-width); the trimap used is written as <name>_trimap.png")
    parser.add_argument("--trimap-from", metavar=TRIMAP_FROM_FORM,
                        help="instead of --trimap-dir: the trimaps predicted by a model that needs none, given by "
                             f"its config and checkpoint (e.g. {TRIMAP_FROM_EXAMPLE}) or its released name (aim); "
                             "written as <name>_trimap.png")
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
    parser.add_argument("--max-memory", metavar="AMOUNT",
                        help="keep this process's memory within AMOUNT (e.g. 3GiB): the network's stripes and blocks "
                             "are sized to what it leaves, at some cost in time (docs/performance.md)")
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
    parser.add_argument("--resume", action="store_true",
                        help="skip the images whose outputs are all in the output folder already (each file is "
                             "written whole or not at all), to finish a run that was stopped")
    parser.add_argument("--background", metavar="SPEC",
                        help="also write <name>_composite.png over this background (implies --cutout): a colour "
                             "(#00ff00, 0,255,0, white) or an image file (scaled to cover, centre-cropped)")
    return parser.parse_args(argv)


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

    def always_written(self, image_path: str) -> List[str]:
        """The names of the files an image gets whatever the model: all but the offset pictures (a
        model without GCA draws none). The alpha is written last, so where it is, the offset
        pictures a model draws are too (--resume)."""
        offsets = tuple(f"{suffix}.png" for suffix in OFFSET_SUFFIXES)
        return [name for name in self.names(image_path) if not name.endswith(offsets)]


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
        offsets = offset_pictures(info) if outputs.offsets else []
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
        names = outputs.always_written(image_path)
    paths = [os.path.join(save_dir, name) for name in names]
    # the alpha last: where it is, the image's other files are (Outputs.always_written)
    write_all(paths[1:] + paths[:1], pictures[1:] + pictures[:1])


GUIDE_FLAGS = {"trimap": "--trimap-dir", "mask": "--mask-dir", "automatic": "--trimap-from"}


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
    ranks = join_ranks(args.device)  # under torchrun; a plain run is rank 0 of 1
    tally = Tally()
    try:
        return run_until_stopped(partial(run, args, tally, ranks), lambda: "" if ranks.rank else tally.stopped_line(
            "images written to", RESUME if (tally.done or ranks.distributed) and not args.resume else AGAIN))
    finally:
        cleanup()


def checked_settings(args: argparse.Namespace) -> Tuple[Optional[dict], str, Optional[Background]]:
    """The config (None for --onnx), the kind of guide and the --background, with the memory cap
    set; ConfigError or ValueError naming the flag or key otherwise."""
    set_memory_cap(args.max_memory, "--max-memory")
    if not args.onnx:
        args.config = config_for(args.checkpoint, args.config, DEFAULT_CONFIG)
    config = None if args.onnx else load_config(args.config)
    # An exported graph always takes a trimap (the export refuses families that take none).
    kind = guide_kind(args, config is None or takes_trimap(model_spec(config)))
    if kind == "automatic":
        parse_trimap_from(args.trimap_from)
    problem = onnx_problem(args) if args.onnx else None
    if problem:
        raise ValueError(problem)
    try:
        return config, kind, parse_background(args.background) if args.background else None
    except ValueError as e:
        raise ValueError(f"--background {e}") from None


def folders_problem(folders: List[Tuple[str, str]], given: Dict[str, Optional[str]], save_dir: str) -> Optional[str]:
    """Why the input `folders` ((flag, folder)) cannot be read or `save_dir` would lie inside one."""
    for name, folder in folders:
        if not os.path.isdir(folder):
            hint = "" if given[name] else " (the published demo's default); give --image-dir and --trimap-dir or --mask-dir"
            return f"{name} {folder} is not a folder{hint}"
    for _, folder in folders:
        if is_inside(save_dir, folder):
            return (f"output folder {save_dir} lies inside the input folder {folder}; "
                    "choose an --output outside it so predictions do not mix with the inputs")
    return None


def run(args: argparse.Namespace, tally: Tally, ranks: DistInfo) -> int:
    """The command's work, this rank's share of it (utils.io.shards), counting the images written
    in `tally`; the exit code."""
    try:
        config, kind, background = checked_settings(args)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outputs = Outputs(offsets=not args.no_offset, trimap=kind in ("mask", "automatic"),
                      cutout=args.cutout or background is not None, composite=background is not None)
    guide_dir = {"trimap": args.trimap_dir or DEFAULT_TRIMAP_DIR, "mask": args.mask_dir}.get(kind)
    flag = GUIDE_FLAGS.get(kind)
    given = {"--image-dir": args.image_dir, flag: args.trimap_dir or args.mask_dir}
    args.image_dir = args.image_dir or DEFAULT_IMAGE_DIR
    folders = [("--image-dir", args.image_dir)] + ([(flag, guide_dir)] if guide_dir else [])
    save_dir = os.path.join(args.output, f"onnx_{os.path.basename(args.onnx)}" if args.onnx
                            else f"{config.version}_{os.path.basename(os.path.normpath(args.checkpoint))}")
    tally.folder = save_dir
    problem = folders_problem(folders, given, save_dir) or output_folder_problem(args.output, save_dir)
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
    for problem in problems if not ranks.rank else []:
        print(f"skipped: {problem}", file=sys.stderr)
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as e:
        print(f"error: --output {args.output}: {save_dir} cannot be created ({e.strerror or e}); "
              "choose another --output folder", file=sys.stderr)
        return 2
    shards = ShardedFolder(ranks, pairs, save_dir, outputs.always_written)
    if args.resume:
        shards.skip_finished()
    if args.resume and not ranks.rank:
        print(f"--resume: {shards.complete} of {total} images have all their files in {save_dir} already; skipped",
              file=sys.stderr)
    tally.total, tally.done = total, shards.complete
    process = partial(process_one, matter, save_dir=save_dir, outputs=outputs, trimap_of=trimap_of, tta=args.tta,
                      background=background)
    shards.run(process, "demo", (FloatingPointError, ExportError, ImageSizeError), tally)
    return shards.summary(total, problems)


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
