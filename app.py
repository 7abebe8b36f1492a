"""A local web page to try a trained GCA-Matting model on your own photos (Gradio).

python app.py --config config/gca-dist-all-data.toml \
    --checkpoint checkpoints/gca-dist-all-data/gca-dist-all-data.pth [--device auto] [--port 7860] \
    [--trimap-from config/aim.toml:checkpoints/aim/aimnet_pretrained_matting.pth]
python app.py --checkpoint gca-dist-all-data --trimap-from aim    # released models by name

Upload a photo, give its trimap (upload one, upload a mask, paint it on the photo, or, with
--trimap-from, let a model that needs none predict it; a model that needs none takes the photo
alone), run: the
page shows the alpha, the cutout over a checkerboard and over a colour or picture, the two GCA
offset pictures, and offers the alpha and the RGBA cutout as PNG files. It binds to 127.0.0.1
unless --host says otherwise and never opens a public share link. The prediction is also an API
endpoint, /matte, for gradio_client. Needs pip install -r requirements-app.txt.
"""
import argparse
import math
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch

from matting import TRIMAP_FROM_EXAMPLE, TRIMAP_FROM_FORM, TRIMAP_SOURCES, AutomaticTrimap, Matter, trimap_model
from utils.inference.offset_pictures import offset_pictures as offset_pictures_bgr
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.extras import MissingExtraError, import_extra
from utils.cutouts.foreground import (Background, checkerboard, composite, estimate_foreground, parse_colour,
                                      require_pymatting, rgba_image, to_uint8)
from utils.io.images import ImageReadError, read_grey, read_image, stem, write_image
from utils.inference.predict import TTA_MODES, offered_precisions, predicted_trimap, runnable_precision
from utils.memory import OutOfMemory, named_out_of_memory, preflight_warning, set_memory_cap
from utils.inference.preprocess import trimap_to_classes
from utils.recipe import FOREGROUND, ImageSizeError, Recipe

INSTALL_HINT = "pip install -r requirements-app.txt"
GUIDES = (("Upload a trimap", "trimap"), ("Upload a mask", "mask"), ("Paint the trimap on the photo", "paint"))
AUTOMATIC = ("Automatic trimap", "automatic")  # with --trimap-from
NO_TRIMAP = ("No trimap: the model finds the subject", "none")  # for a model that takes none
AUTOMATIC_SOURCES = (("its semantic map", "semantic"), ("its alpha, banded as a mask", "alpha"))
UNPAINTED = (("background", "background"), ("unknown", "unknown"))
# Brush colours (RGB) and the trimap grey each paints; a painted pixel takes the nearest brush colour.
BRUSHES = {"foreground": ((40, 200, 80), 255), "background": ((230, 50, 50), 0), "unknown": ((50, 110, 240), 128)}
# A trimap or mask whose width / height ratio is this close to the photo's is taken as a resized copy of it.
ASPECT_TOLERANCE = 0.02


class PageError(ValueError):
    """Bad input on the page: shown to the user as it is."""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None,
                        help="the model's config (.toml); the released model's own where --checkpoint names one")
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint file, or a released model's name (python -m networks.models lists them; "
                             "fetched and cached on first use)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when available, else CPU")
    parser.add_argument("--port", type=int, default=7860, help="port of the page (default 7860)")
    parser.add_argument("--max-memory", metavar="AMOUNT",
                        help="keep this process's memory within AMOUNT (e.g. 3GiB), as demo.py's flag does")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                             "network)")
    parser.add_argument("--max-side", type=int, default=4096, metavar="PX",
                        help="photos longer than PX pixels on their long side are refused (default 4096)")
    parser.add_argument("--trimap-from", metavar=TRIMAP_FROM_FORM,
                        help="offer an automatic trimap, predicted by a model that needs none, given by its config "
                             f"and checkpoint (e.g. {TRIMAP_FROM_EXAMPLE}) or its released name (aim)")
    return parser.parse_args(argv)


def guide_choices(matter: Matter, automatic: Optional[AutomaticTrimap]) -> List[Tuple[str, str]]:
    """The page's ways to the trimap: "no trimap" alone for a model that takes none; else upload,
    mask, paint, and the automatic trimap where a model for it was given."""
    if not matter.recipe.takes_trimap:
        return [NO_TRIMAP]
    return list(GUIDES) + ([AUTOMATIC] if automatic else [])


def import_gradio() -> ModuleType:
    """The gradio module, or MissingExtraError saying how to install it."""
    return import_extra("gradio", f"the page needs gradio: {INSTALL_HINT}")


def read_upload(path: str, what: str, grey: bool = False) -> np.ndarray:
    """An uploaded file as read_image / read_grey read it; PageError naming `what` and the file's name."""
    try:
        return read_grey(path) if grey else read_image(path)
    except ImageReadError as e:
        raise PageError(str(e).replace(path, f"the {what} ({os.path.basename(path)})")) from None


def check_photo_size(image: np.ndarray, max_side: int) -> None:
    height, width = image.shape[:2]
    if max(height, width) > max_side:
        raise PageError(f"the photo is {width} x {height} px; this page takes photos of at most {max_side} px on "
                        f"the long side (app.py --max-side); scale it down and upload it again")


def fit_to_photo(guide: np.ndarray, photo_shape: Tuple[int, int], what: str, nearest: bool) -> Tuple[np.ndarray, str]:
    """(guide at the photo's size, a note or ""). A guide of the photo's shape but another size is
    resized (nearest neighbour for trimaps, so no new greys appear); one of another shape is refused."""
    height, width = photo_shape
    guide_h, guide_w = guide.shape[:2]
    if (guide_h, guide_w) == (height, width):
        return guide, ""
    if abs(math.log((guide_w / guide_h) / (width / height))) > ASPECT_TOLERANCE:
        raise PageError(f"the {what} is {guide_w} x {guide_h} px but the photo is {width} x {height} px, another "
                        f"shape: it belongs to another picture; give a {what} of the photo's size")
    resized = cv2.resize(guide, (width, height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)
    return resized, f"The {what} ({guide_w} x {guide_h} px) was resized to the photo's {width} x {height} px."


def painted_trimap(layers: List[np.ndarray], unpainted: str) -> np.ndarray:
    """The grey trimap painted with BRUSHES on RGBA layers (later layers on top); unpainted pixels
    are background or unknown, as `unpainted` says."""
    colours = np.array([colour for colour, _ in BRUSHES.values()], np.int32)
    greys = np.array([grey for _, grey in BRUSHES.values()], np.uint8)
    trimap = np.full(layers[0].shape[:2], BRUSHES[unpainted][1], np.uint8)
    for layer in layers:
        painted = layer[:, :, 3] > 0
        distances = ((layer[painted][:, None, :3].astype(np.int32) - colours[None]) ** 2).sum(axis=2)
        trimap[painted] = greys[distances.argmin(axis=1)]
    return trimap


def painted_problem(trimap: np.ndarray, recipe: Recipe) -> str:
    """'' for a painted trimap the network has something to do with, else what to paint."""
    classes = trimap_to_classes(trimap)
    if not (classes == FOREGROUND).any():
        return "the painted trimap has no foreground: paint part of the subject with the foreground (green) brush"
    if not recipe.has_unknown(trimap):
        return ("the painted trimap has no unknown pixel, so there is nothing to matte: paint the uncertain edge "
                "(hair, fur, blur) with the unknown (blue) brush, or make unpainted pixels unknown")
    return ""


def as_note(warning: str) -> str:
    """A warning clause as a sentence on the page ('' stays '')."""
    return f"{warning[:1].upper()}{warning[1:]}." if warning else ""


def colour_background(spec: str) -> Background:
    """A plain Background from a colour picker's value: '#rrggbb', 'rgb(R, G, B)' or 'rgba(R, G, B, A)'."""
    text = spec.strip()
    match = re.fullmatch(r"rgba?\(([^)]*)\)", text)
    try:
        colour = parse_colour(",".join(str(round(float(part))) for part in match.group(1).split(",")[:3])
                              if match else text)
    except (ValueError, OverflowError):
        colour = None
    if colour is None:
        raise PageError(f"the background colour {spec!r} is not a colour; pick one with the colour picker")
    return Background(colour_bgr=colour)


def precision_warning(precision: str, device: torch.device) -> str:
    """runnable_precision's warning for running in `precision` on `device`, or ""; PageError where
    the device cannot run it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runnable_precision(precision, device)
        except ValueError as e:
            raise PageError(str(e)) from None
    return " ".join(str(w.message) for w in caught)


def offset_pictures(info: Optional[Dict]) -> List[Optional[np.ndarray]]:
    """The two GCA offset pictures (RGB), or Nones for a model without GCA."""
    return [picture[:, :, ::-1] for picture in offset_pictures_bgr(info)] or [None, None]


@dataclass
class Inputs:
    """What the page's Run sends: file paths of the uploads, the painted layers, the options."""
    photo: Optional[str]
    guide: str = "trimap"
    trimap: Optional[str] = None
    mask: Optional[str] = None
    unknown_width: int = 0  # 0: the default, 1 % of the image diagonal
    layers: List[np.ndarray] = field(default_factory=list)
    unpainted: str = "background"
    tta: str = "none"
    precision: str = "fp32"
    colour: str = "#ffffff"
    background: Optional[str] = None
    automatic_source: str = "semantic"  # of the automatic trimap: "semantic" or "alpha"


@dataclass
class Results:
    """Pictures in RGB order for display, the cutout in BGRA as write_image saves it, notes for the user."""
    alpha: np.ndarray
    trimap: Optional[np.ndarray]  # the one used (a model that takes none: its own, where it has one)
    over_checkerboard: np.ndarray
    over_background: np.ndarray
    offsets: List[Optional[np.ndarray]]
    bgra: np.ndarray
    notes: List[str]


def automatic_trimap(inputs: Inputs, image: np.ndarray, matter: Matter,
                     automatic: Optional[AutomaticTrimap]) -> Tuple[np.ndarray, List[str]]:
    """(the trimap a model that needs none predicts for the photo, notes)."""
    if automatic is None:
        raise PageError("no automatic trimap on this page: start app.py with --trimap-from "
                        f"{TRIMAP_FROM_FORM}, e.g. {TRIMAP_FROM_EXAMPLE}")
    if inputs.automatic_source not in TRIMAP_SOURCES:
        raise PageError(f"the automatic trimap comes from {' or '.join(TRIMAP_SOURCES)}, not {inputs.automatic_source!r}")
    try:
        trimap = automatic.predict_bgr(image, inputs.automatic_source, inputs.unknown_width or None)
    except (ValueError, FloatingPointError) as e:
        raise PageError(f"the automatic trimap: {e}") from None
    return trimap, [f"The trimap was predicted by {automatic.matter.family.title}."]


def trimap_of(inputs: Inputs, image: np.ndarray, matter: Matter,
              automatic: Optional[AutomaticTrimap] = None) -> Tuple[Optional[np.ndarray], List[str]]:
    """(the grey trimap for the photo, notes): uploaded, made from a mask, painted, predicted by
    another model, or None for a model that takes none."""
    shape = image.shape[:2]
    if not matter.recipe.takes_trimap:
        if inputs.guide != "none":
            raise PageError(f"this model ({matter.family.title}) predicts from the photo alone: choose "
                            f"\"{NO_TRIMAP[0]}\"")
        return None, []
    if inputs.guide == "none":
        raise PageError("this model needs a trimap: upload one, upload a mask, paint it"
                        + (", or choose the automatic trimap" if automatic else ""))
    if inputs.guide == "automatic":
        return automatic_trimap(inputs, image, matter, automatic)
    if inputs.guide == "paint":
        if not inputs.layers:
            raise PageError("nothing is painted: paint the trimap on the photo with the three brushes")
        trimap, note = fit_to_photo(painted_trimap(inputs.layers, inputs.unpainted), shape, "painted trimap", True)
        problem = painted_problem(trimap, matter.recipe)
        if problem:
            raise PageError(problem)
        return trimap, [note]
    if inputs.guide not in ("trimap", "mask"):
        raise PageError(f"the trimap source must be trimap, mask or paint, not {inputs.guide!r}")
    path = inputs.trimap if inputs.guide == "trimap" else inputs.mask
    if path is None:
        raise PageError(f"no {inputs.guide} uploaded: upload one, or choose another way to give the trimap")
    guide, note = fit_to_photo(read_upload(path, inputs.guide, grey=True), shape, inputs.guide,
                               nearest=inputs.guide == "trimap")
    try:
        if inputs.guide == "mask":
            return matter.trimap_for(image, None, guide, inputs.unknown_width or None), [note]
        trimap = matter.trimap_for(image, guide, None, None)
    except ValueError as e:
        raise PageError(str(e)) from None
    return trimap, [note]


def matte(matter: Matter, inputs: Inputs, max_side: int,
          progress: Callable[[float, str], None] = lambda fraction, desc: None,
          automatic: Optional[AutomaticTrimap] = None) -> Results:
    """Runs the page's inputs through the model (and the automatic trimap's model) and the cutout
    code; PageError for bad input."""
    if inputs.photo is None:
        raise PageError("no photo: upload a photo first")
    if inputs.tta not in TTA_MODES:
        raise PageError(f"tta must be one of {', '.join(TTA_MODES)}, not {inputs.tta!r}")
    progress(0.05, "Reading the inputs")
    image = read_upload(inputs.photo, "photo")
    check_photo_size(image, max_side)
    try:
        trimap, notes = trimap_of(inputs, image, matter, automatic)
    except ImageSizeError as e:
        raise PageError(str(e)) from None
    background = (Background(picture=read_upload(inputs.background, "background picture")) if inputs.background
                  else colour_background(inputs.colour))
    height, width = image.shape[:2]
    known = matter.recipe.known_regions_warning(trimap) if trimap is not None else ""
    notes += [precision_warning(inputs.precision, matter.device), as_note(known),
              as_note(preflight_warning(width, height, matter.peak_estimate()))]
    progress(0.2, "Running the model")
    try:
        with named_out_of_memory("the photo", width, height, matter.peak_estimate()):
            alpha, info = matter.predict_bgr(image, trimap, inputs.tta, inputs.precision)
            progress(0.6, "Estimating the foreground colours")
            foreground = estimate_foreground(image, alpha)
    except (FloatingPointError, ImageSizeError, OutOfMemory) as e:
        raise PageError(str(e)) from None
    progress(0.9, "Compositing")
    board = checkerboard(height, width, square=max(16, max(height, width) // 48))
    return Results(alpha=alpha, trimap=trimap if trimap is not None else predicted_trimap(info),
                   over_checkerboard=composite(foreground, alpha, board)[:, :, ::-1],
                   over_background=composite(foreground, alpha, background.fill(height, width))[:, :, ::-1],
                   offsets=offset_pictures(info), bgra=rgba_image(foreground, alpha),
                   notes=[note for note in notes if note])


def save_downloads(results: Results, photo: str, folder: str) -> Tuple[str, str]:
    """(alpha PNG, RGBA PNG) written into a new folder inside `folder`, named after the photo."""
    run_folder = tempfile.mkdtemp(dir=folder)
    name = stem(photo)
    paths = os.path.join(run_folder, f"{name}_alpha.png"), os.path.join(run_folder, f"{name}_rgba.png")
    write_image(paths[0], results.alpha)
    write_image(paths[1], results.bgra)
    return paths


def input_controls(gr, image_file, choices: list, automatic: Optional[AutomaticTrimap], precisions: List[str],
                   precision: str, brush) -> SimpleNamespace:
    """The page's left column: the photo, the trimap's source and its inputs, the options and Run."""
    c = SimpleNamespace()
    c.photo = image_file(label="Photo", elem_id="photo")
    c.guide = gr.Radio(choices, value=choices[0][1], label="Trimap", elem_id="guide")
    with gr.Group(visible=choices[0][1] == "trimap") as c.trimap_group:
        c.trimap = image_file(label="Trimap (black background, grey unknown, white foreground)", elem_id="trimap")
    with gr.Group(visible=False) as c.mask_group:
        c.mask = image_file(label="Mask (white subject on black)", elem_id="mask")
    with gr.Group(visible=False) as c.automatic_group:
        c.automatic_source = gr.Radio(AUTOMATIC_SOURCES, value="semantic", elem_id="automatic_source",
                                      label=f"The trimap from {automatic.matter.family.title if automatic else ''}")
    with gr.Group(visible=False) as c.band_group:
        c.unknown_width = gr.Slider(0, 100, value=0, step=1,
                                    label="Unknown band half-width, px (0: 1 % of the image diagonal)")
    with gr.Group(visible=False) as c.paint_group:
        gr.Markdown("Brushes: **green** foreground, **red** background, **blue** unknown "
                    "(the uncertain edge: hair, fur, blur).")
        c.painted = gr.ImageEditor(label="Paint the trimap", sources=[], transforms=[], brush=brush,
                                   layers=False, format="png", image_mode="RGBA", elem_id="painted")
        c.unpainted = gr.Radio(UNPAINTED, value="background", label="Unpainted pixels are")
    with gr.Accordion("Options", open=False):
        c.tta = gr.Radio(list(TTA_MODES), value="none", label="Test-time augmentation")
        c.precision = gr.Radio(precisions, value=precision, label="Precision")
        c.colour = gr.ColorPicker(value="#ffffff", label="Background colour for the composite")
        c.background = image_file(label="Or a background picture")
    c.run_button = gr.Button("Run", variant="primary", elem_id="run")
    return c


def output_views(gr) -> SimpleNamespace:
    """The page's right column: notes, alpha, trimap used, the two cutouts, GCA's offset pictures
    and the downloads."""
    v = SimpleNamespace()
    v.notes = gr.Markdown(elem_id="notes")
    with gr.Row():
        v.alpha = gr.Image(label="Alpha", format="png", interactive=False, elem_id="alpha")
        v.trimap_used = gr.Image(label="Trimap used", format="png", interactive=False)
    with gr.Row():
        v.over_checkerboard = gr.Image(label="Cutout over a checkerboard", format="png", interactive=False)
        v.over_background = gr.Image(label="Cutout over the background", format="png", interactive=False)
    gr.Markdown("GCA offsets of the first and second attention block (hue: direction, saturation: "
                "length; the two softmax scales are written on each):")
    with gr.Row():  # no label: it would cover the scales written on the picture
        v.offset1 = gr.Image(label="GCA offsets, first block", show_label=False, format="png",
                             interactive=False, buttons=["download"])
        v.offset2 = gr.Image(label="GCA offsets, second block", show_label=False, format="png",
                             interactive=False, buttons=["download"])
    with gr.Row():
        v.alpha_download = gr.DownloadButton("Download the alpha (PNG)")
        v.rgba_download = gr.DownloadButton("Download the cutout (RGBA PNG)")
    return v


def build_page(matter: Matter, max_side: int, download_folder: str, automatic: Optional[AutomaticTrimap] = None):
    """The Gradio Blocks of the page; its Run is the API endpoint /matte. `automatic`: the model
    behind the "automatic trimap" choice, or None."""
    gr = import_gradio()
    choices = guide_choices(matter, automatic)

    def image_file(**kwargs):
        """A gr.Image that hands over the uploaded file's path without decoding it first, so that an
        unreadable file gets the project's reader and its message rather than a PIL error inside
        Gradio. (Overridden on the instance: a subclass would make Gradio write app.pyi.)"""
        image = gr.Image(type="filepath", sources=["upload", "clipboard"], **kwargs)
        image.preprocess = lambda payload: None if payload is None else payload.path
        return image

    precisions = list(offered_precisions(matter.device))
    # Half-transparent paint keeps the photo visible under the strokes.
    brush = gr.Brush(colors=[(f"rgb{colour}", 0.6) for colour, _ in BRUSHES.values()], color_mode="fixed")

    # The defaults make these optional for gradio_client callers of /matte.
    def run(photo=None, guide=choices[0][1], trimap=None, mask=None, unknown_width=0, painted=None,
            unpainted="background", tta="none", precision="fp32", colour="#ffffff", background=None,
            automatic_source="semantic", progress=gr.Progress()):
        layers = [layer for layer in (painted or {}).get("layers") or [] if layer is not None]
        inputs = Inputs(photo, guide, trimap, mask, int(unknown_width or 0), layers, unpainted, tta, precision,
                        colour, background, automatic_source)
        try:
            results = matte(matter, inputs, max_side, lambda fraction, desc: progress(fraction, desc=desc), automatic)
        except (PageError, MissingExtraError) as e:
            raise gr.Error(str(e), print_exception=False) from None
        for note in results.notes:
            gr.Warning(note)
        alpha_file, rgba_file = save_downloads(results, photo, download_folder)
        notes = "\n".join(f"- {note}" for note in results.notes)
        return (results.alpha, results.over_checkerboard, results.over_background, *results.offsets, results.trimap,
                alpha_file, rgba_file, notes)

    def photo_to_paint_on(path):
        """The photo, decoded here, as the painting canvas's background; a warning instead for a
        photo the page cannot take (the editor would otherwise fail on it without a message)."""
        if path is None:
            return None
        try:
            image = read_upload(path, "photo")
            check_photo_size(image, max_side)
        except PageError as e:
            gr.Warning(str(e))
            return None
        return to_uint8(image)[:, :, ::-1]

    def show_guide(guide):
        return [gr.update(visible=guide in kinds)
                for kinds in (("trimap",), ("mask",), ("automatic",), ("mask", "automatic"), ("paint",))]

    with gr.Blocks(title="GCA-Matting", analytics_enabled=False) as page:
        gr.Markdown("# GCA-Matting\n" + ("Upload a photo, give its trimap, press **Run**." if matter.recipe.takes_trimap
                                          else f"{matter.family.title}: upload a photo, press **Run**."))
        with gr.Row():
            with gr.Column():
                given = input_controls(gr, image_file, choices, automatic, precisions, matter.precision, brush)
            with gr.Column():
                shown = output_views(gr)
        given.guide.change(show_guide, given.guide, [given.trimap_group, given.mask_group, given.automatic_group,
                                               given.band_group, given.paint_group], api_name=False)
        given.photo.change(photo_to_paint_on, given.photo, given.painted, api_name=False)
        given.run_button.click(run, [given.photo, given.guide, given.trimap, given.mask, given.unknown_width,
                                     given.painted, given.unpainted, given.tta, given.precision, given.colour,
                                     given.background, given.automatic_source],
                               [shown.alpha, shown.over_checkerboard, shown.over_background, shown.offset1,
                                shown.offset2, shown.trimap_used, shown.alpha_download, shown.rgba_download,
                                shown.notes], api_name="matte")
    return page


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.max_side < 32:
        print(f"error: --max-side must be at least 32 px, got {args.max_side}", file=sys.stderr)
        return 2
    try:
        set_memory_cap(args.max_memory, "--max-memory")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        import_gradio()
    except MissingExtraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        require_pymatting()
    except MissingExtraError:
        print(f"error: the page's cutouts need pymatting: {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        matter = Matter(args.config, args.checkpoint, args.device)
        if args.trimap_from and not matter.recipe.takes_trimap:
            raise ValueError(f"{args.config or args.checkpoint}: its model predicts from the photo alone; drop "
                             "--trimap-from")
        automatic = trimap_model(args.trimap_from, args.device) if args.trimap_from else None
    except (ConfigError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gca-app-") as download_folder:
        page = build_page(matter, args.max_side, download_folder, automatic)
        try:
            # quiet: Gradio would print "To create a public link, set share=True", a link this page
            # never makes; its address is printed here instead
            page.launch(server_name=args.host, server_port=args.port, share=False, ssr_mode=False, quiet=True,
                        prevent_thread_lock=True)
        except OSError as e:
            print(f"error: cannot serve on {args.host}:{args.port} ({e}); choose another --port", file=sys.stderr)
            return 2
        print(f"* Running on local URL:  {page.local_url} (no public share link; Ctrl-C stops it)", flush=True)
        page.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
