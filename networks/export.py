"""Export a trained model as one self-contained ONNX file that onnxruntime runs at any image size.

python -m networks.export --config CFG --checkpoint CKPT --output FILE.onnx [--opset N]

The graph takes `image` (uint8, H x W x 3, RGB) and `trimap` (uint8, H x W, grey: < 85
background, >= 170 foreground, else unknown) and returns `alpha` (uint8, H x W), H and W free.
Everything demo.py does around the network is inside it: ImageNet normalisation, the reflect
padding (32 px plus up to a multiple of 32), the trimap classes, forcing the known regions,
the crop and the truncation to uint8. GCA's attention runs as an ONNX Scan over the rows of
its 1/16 grid, so no L x L score volume is ever allocated; the full-resolution layers run on
the whole image (no stripes), so memory grows with the image: about 6.6 GiB at 3840x2160 on
onnxruntime's CPU provider (README, "ONNX export"). Before writing, the exporter runs the
graph on onnxruntime at two sizes and compares it with PyTorch's alpha (demo.py's); the file
is written (atomically) only when they agree. Needs requirements-export.txt.
"""
import argparse
import contextlib
import copy
import importlib.util
import logging
import os
import sys
import tempfile
import warnings
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._higher_order_ops.scan import scan

from networks import gca_matting
from networks.families import family_of, load_configured
from networks.gca import RATE, GuidedCxtAtten, extract_patches, softmax_scales
from networks.generator import WHOLE
from networks.ops import SpectralNorm, replace_modules
from utils.atomic import WriteError, write_bytes
from utils.checkpoint import CheckpointError
from utils.config import ConfigError, ModelSpec
from utils.inference.predict import predict_alpha
from utils.recipe import Recipe, RecipeForward

INPUT_NAMES, OUTPUT_NAME = ("image", "trimap"), "alpha"
# The exported file's metadata: the model's family and trimap channels (its recipe).
FAMILY_KEY, TRIMAP_CHANNEL_KEY = "model.family", "model.trimap_channel"
HEIGHT, WIDTH = "height", "width"
# torch's exporter implements opsets 18 (lower ones only by a conversion that can fail) to 23.
MIN_OPSET, DEFAULT_OPSET, MAX_OPSET = 18, 20, 23
EXPORT_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
QUIET_LOGGERS = ("torch.onnx", "onnx_ir")
INSTALL_HINT = "pip install -r requirements-export.txt"
# The exporter's self-check: one wide and one tall size, neither a multiple of 32.
CHECK_SIZES = ((75, 130), (130, 75))
# Peak RSS on onnxruntime's CPU provider per image megapixel, rounded up from
# networks.benchmark_export (6.64 GiB at 3840x2160, 6.81 at 4096x2304, 8.76 at 4480x2520).
PEAK_GIB_PER_MEGAPIXEL = 0.8
# demo.py's alpha within 1 level on at least this fraction of pixels (the attention sums in
# another order than PyTorch's blocks, which can move a truncated value by one level).
AGREEMENT = 0.999


class ExportError(RuntimeError):
    """A user-facing problem with an export or an exported file: the message says what to do."""


def _first_line(error: Exception) -> str:
    """The first line of an error's message, or its type's name where the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def missing_export_packages() -> List[str]:
    return [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]


def require_export_packages(names: Sequence[str] = EXPORT_PACKAGES) -> None:
    missing = [name for name in missing_export_packages() if name in names]
    if missing:
        raise ExportError(f"{', '.join(missing)} not installed; ONNX export and --onnx need: {INSTALL_HINT}")


def _shifted_sum(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """attend_blocked's G for one output row b: the sum over s in {0, 1}^2 of the attention of
    query row b - s_y at (query x - s_x, key - s), from the zero-padded attention rows of query
    rows b - 1 and b, each (w + 2) x (h + 2) x (w + 2). Returns (w + 1) x (h + 1)(w + 1)."""
    pair = torch.stack([previous, current])
    across = pair[:, 1:, :, 1:] + pair[:, :-1, :, :-1]
    gathered = across[1, :, 1:, :] + across[0, :, :-1, :]
    return gathered.reshape(gathered.shape[0], -1)


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


def attend_scanned(patches: torch.Tensor, keys: torch.Tensor, alpha: torch.Tensor, key_scale: torch.Tensor,
                   penalty: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """attend_blocked as a Scan over the rows of the query grid, one row per step, so that one
    graph serves every image size: the scores of a row's w queries against all L keys (the key
    scales folded into the keys), the self-match penalty, the softmax over keys, and the
    regrouped propagation, which needs the row above's attention (the scan's carry).
    Whole rows keep every shape a plain product of h and w, which torch.export reasons about
    in seconds.

    patches: L x C x 3 x 3 guidance patches (flattened, the queries); keys: the same normalised;
    alpha: 1 x C' x 2h x 2w; key_scale, penalty: L each (see attend_blocked); grid: (h, w),
    L = h w. Returns 1 x C' x 2h x 2w."""
    height, width = grid
    length, channels = patches.shape[0], alpha.shape[1]
    key_matrix = keys.reshape(length, -1).t() * key_scale
    padded = F.pad(alpha, (1, 1, 1, 1), mode="reflect")[0]
    phases = padded.reshape(channels, height + 1, 2, width + 1, 2).permute(1, 3, 2, 4, 0)
    phases = phases.reshape((height + 1) * (width + 1), 4 * channels)
    queries = patches.reshape(height, width, -1)
    penalty = penalty.reshape(height, width)
    key_index = torch.arange(length)

    def one_row(previous: torch.Tensor, row: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        query, own, own_penalty = row
        scores = query @ key_matrix + torch.where(key_index == own[:, None], own_penalty[:, None], 0.0)
        attention = F.softmax(scores, dim=1).reshape(width, height, width)
        current = F.pad(attention, (1, 1, 1, 1, 1, 1))
        return current, _shifted_sum(previous, current) @ phases

    start = key_matrix.new_zeros(width + 2, height + 2, width + 2)
    last, rows = scan_rows(one_row, start, (queries, key_index.reshape(height, width), penalty))
    final = _shifted_sum(last, torch.zeros_like(last)) @ phases
    out = torch.cat([rows, final[None]]).reshape(height + 1, width + 1, 2, 2, channels)
    out = out.permute(4, 0, 2, 1, 3).reshape(1, channels, 2 * height + 2, 2 * width + 2)
    return out[:, :, 1:2 * height + 1, 1:2 * width + 1] / 4.


class ScannedGCA(GuidedCxtAtten):
    """GuidedCxtAtten whose attention is attend_scanned: one graph for every image size, the
    scores in memory O(L x w) (w = the 1/16 grid's width). Batch size 1; no offsets (None),
    which the exported graph does not output."""

    def attend(self, guidance: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor):
        if alpha.shape[0] != 1:
            raise ValueError(f"ScannedGCA takes one image at a time, got a batch of {alpha.shape[0]}")
        # On these even sizes the slices are exactly nearest downsampling by 1/2; unlike
        # F.interpolate they keep torch.export's shape expressions free of float truncation,
        # and the checks let it equate the two grids (the export takes half the time).
        guidance, unknown = guidance[:, :, ::RATE, ::RATE], unknown[:, :, ::RATE, ::RATE]
        torch._check(unknown.shape[2] == guidance.shape[2])
        torch._check(unknown.shape[3] == guidance.shape[3])
        scales = softmax_scales(unknown).to(alpha)
        fractions = extract_patches(unknown, kernel=3, stride=1).mean(dim=[2, 3, 4])[0]
        patches = extract_patches(guidance, kernel=3, stride=1)[0]
        key_scale = torch.where(fractions > 0, scales[0, 0], scales[0, 1])
        out = attend_scanned(patches, self.variant.normalised_keys(patches), alpha, key_scale,
                             self.variant.penalty(fractions), tuple(guidance.shape[2:]))
        return out, None, scales


def _plain_conv(wrapper: SpectralNorm) -> nn.Module:
    """The wrapped conv with its eval-mode normalised weight as a plain `weight`."""
    conv = wrapper.module
    weight = wrapper.normalized_weight().detach()
    for name in ("weight_u", "weight_v", "weight_bar"):
        del conv._parameters[name]
    conv.weight = nn.Parameter(weight, requires_grad=False)
    return conv


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


def _scanned(module: GuidedCxtAtten) -> ScannedGCA:
    scanned = ScannedGCA(module.W[0].in_channels, module.guidance_conv.in_channels)
    scanned.load_state_dict(module.state_dict())
    scanned.variant = module.variant
    return scanned.eval()


def exportable_copy(network: nn.Module) -> nn.Module:
    """An eval-mode copy computing the same alpha in a form torch.export captures for any size
    and onnxruntime runs in less memory: spectral norms folded into plain weights, ScannedGCA
    attention, PhasedConvTranspose upsampling, the network unstriped (the stripes' count is
    Python-level). Modules a network does not have are left alone."""
    network = copy.deepcopy(network).eval()
    replace_modules(network, SpectralNorm, _plain_conv)
    replace_modules(network, GuidedCxtAtten, _scanned)
    replace_modules(network, nn.ConvTranspose2d, _phased)
    if hasattr(network, "stripe_rows"):
        network.stripe_rows = WHOLE
    return network


class DemoGraph(nn.Module):
    """A network inside its recipe, fp32, no TTA, as one module on uint8 tensors: image H x W x 3
    RGB and grey trimap H x W in, uint8 alpha H x W out (predict_alpha's)."""

    def __init__(self, network: nn.Module, recipe: Recipe):
        super().__init__()
        self.forward_recipe = RecipeForward(network, recipe)

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        alpha, _ = self.forward_recipe(image, trimap)
        return self.forward_recipe.recipe.to_uint8(alpha)


def _float_clamp_bounds(program: torch.export.ExportedProgram) -> None:
    """torch 2.13's ONNX type promotion fails on clamp(x, 0.1, 10) (a float and an int bound,
    softmax_scales); the same bounds as floats give the same values."""
    for node in program.graph.nodes:
        if node.target == torch.ops.aten.clamp.default:
            node.args = tuple(float(a) if type(a) is int else a for a in node.args)


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset {opset}: choose {MIN_OPSET}..{MAX_OPSET}, the opsets torch's exporter "
                          f"implements (default {DEFAULT_OPSET})")


def export_onnx(network: nn.Module, spec: ModelSpec, opset: int = DEFAULT_OPSET) -> bytes:
    """The serialised ONNX model of demo.py's pipeline around `network` (left unchanged): its
    family's exportable form of it inside the family's demo recipe. The file's metadata names
    the family and the trimap channels (for the recipe's messages in demo.py --onnx)."""
    check_opset(opset)
    require_export_packages()
    family = family_of(spec)
    if family.export_refusal:
        raise ExportError(f"{family.title}: {family.export_refusal}")
    graph = DemoGraph((family.exportable or exportable_copy)(network), family.recipes(spec)[0])
    example = (torch.zeros(45, 70, 3, dtype=torch.uint8), torch.full((45, 70), 128, dtype=torch.uint8))
    # Dim.DYNAMIC, not named Dims: torch.export cannot prove the (true) guards that nearest
    # downsampling by 1/2 puts on the padded size, and named Dims would refuse them.
    shapes = {name: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC} for name in INPUT_NAMES}
    with _quiet_exporter(), torch.no_grad():
        program = torch.export.export(graph, example, dynamic_shapes=shapes)
        _float_clamp_bounds(program)
        onnx_program = torch.onnx.export(program, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                         opset_version=opset, dynamo=True, verbose=False)
    model = onnx_program.model_proto
    for value in (*model.graph.input, *model.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, (HEIGHT, WIDTH)):
            dim.dim_param = name
    for key, value in ((FAMILY_KEY, spec.family), (TRIMAP_CHANNEL_KEY, str(spec.trimap_channel))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keeps torch.onnx's notes (torchvision ops it skips), onnx_ir's (an empty attribute list
    typed as integers, from the max-unpooling's lowering) and torch's deprecation warnings off
    the console: none of them concerns this graph, which is checked on onnxruntime anyway."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def onnx_providers(device: str) -> List[str]:
    """onnxruntime's execution providers for demo.py's --device: cpu, cuda (onnxruntime-gpu) or auto."""
    require_export_packages(("onnxruntime",))
    import onnxruntime
    available = onnxruntime.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ExportError("--device cuda with --onnx needs onnxruntime-gpu (this onnxruntime has "
                          f"{', '.join(available)}); use --device cpu")
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxMatting:
    """An exported file on onnxruntime: alpha = OnnxMatting("model.onnx")(image_rgb, trimap).
    `model` is a path or the serialised bytes."""

    def __init__(self, model: Union[str, bytes], providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: Optional[int] = None):
        require_export_packages(("onnxruntime",))
        import onnxruntime
        self.name = model if isinstance(model, str) else "the exported graph"
        if isinstance(model, str) and not os.path.isfile(model):
            raise ExportError(f"{model}: no such file; give the .onnx file networks.export wrote")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # errors come back as exceptions, reported by the caller
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(model, options, providers=list(providers))
        except Exception as e:  # onnxruntime raises its own unexported error types
            raise ExportError(f"{self.name}: onnxruntime cannot load it ({_first_line(e)}); "
                              "export it again with python -m networks.export") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        spec = ModelSpec(metadata.get(FAMILY_KEY, gca_matting.NAME), "", "", int(metadata.get(TRIMAP_CHANNEL_KEY, 3)))
        try:
            self.recipe = family_of(spec).recipes(spec)[0]
        except ValueError as e:
            raise ExportError(f"{self.name}: {e}; export it again with this version of the project") from None
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = tuple(o.name for o in self.session.get_outputs())
        if inputs != INPUT_NAMES or outputs != (OUTPUT_NAME,):
            raise ExportError(f"{self.name}: inputs {inputs} and outputs {outputs}, not the exported matting graph's "
                              f"{INPUT_NAMES} -> ({OUTPUT_NAME!r},); export it with python -m networks.export")

    def __call__(self, image_rgb: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """uint8 RGB H x W x 3 and grey trimap H x W -> uint8 alpha H x W. ValueError for
        mismatched arrays; ExportError where onnxruntime fails (out of memory, for one)."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or trimap.shape != image_rgb.shape[:2] or not trimap.size:
            raise ValueError(f"the image must be H x W x 3 and the trimap H x W of the same size, not empty; "
                             f"got {image_rgb.shape} and {trimap.shape}")
        feed = {"image": np.ascontiguousarray(image_rgb, dtype=np.uint8),
                "trimap": np.ascontiguousarray(trimap, dtype=np.uint8)}
        try:
            return self.session.run([OUTPUT_NAME], feed)[0]
        except Exception as e:  # onnxruntime's error types are not public
            size = f"{trimap.shape[1]}x{trimap.shape[0]}"
            if "Failed to allocate memory" in str(e):
                raise ExportError(f"onnxruntime ran out of memory on a {size} image (the exported graph needs about "
                                  f"{PEAK_GIB_PER_MEGAPIXEL} GiB per megapixel, README \"ONNX export\"); run it with "
                                  "PyTorch (demo.py without --onnx), which computes large images in stripes") from None
            raise ExportError(f"onnxruntime failed on a {size} image: {_first_line(e)}") from None


def check_pair(height: int, width: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """A random RGB image and a trimap with background, foreground and an unknown band between."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    trimap = np.full((height, width), 128, np.uint8)
    trimap[: height // 4] = 0
    trimap[-(height // 4):] = 255
    return image, trimap


def agreement(alpha: np.ndarray, reference: np.ndarray) -> Tuple[int, float]:
    """(largest difference in levels, fraction of pixels within one level)."""
    levels = np.abs(alpha.astype(np.int16) - reference.astype(np.int16))
    return int(levels.max()), float((levels <= 1).mean())


def verify_export(model: bytes, network: nn.Module, recipe: Recipe,
                  sizes: Sequence[Tuple[int, int]] = CHECK_SIZES) -> List[str]:
    """Runs the serialised graph on onnxruntime at each (height, width) and compares it with
    predict_alpha on `network` in `recipe` (demo.py's alpha); one line per size, ExportError on
    disagreement."""
    matting = OnnxMatting(model)
    lines = []
    for index, (height, width) in enumerate(sizes):
        image, trimap = check_pair(height, width, index)
        expected, _ = predict_alpha(network, recipe, np.ascontiguousarray(image[:, :, ::-1]), trimap,
                                    torch.device("cpu"))
        largest, within = agreement(matting(image, trimap), expected)
        line = (f"{width}x{height}: {100 * within:.2f} % of pixels within 1/255 of PyTorch's alpha, "
                f"largest difference {largest}/255")
        if within < AGREEMENT:
            raise ExportError(f"onnxruntime disagrees with PyTorch at {line}; nothing written")
        lines.append(line)
    return lines


def output_problem(output: str) -> Optional[str]:
    """Why `output` cannot be written, or None; it creates nothing."""
    folder = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output):
        return f"--output {output} is a folder; give a file path such as {os.path.join(output, 'model.onnx')}"
    if not os.path.exists(folder):
        return f"--output {output}: the folder {folder} does not exist; create it or choose another path"
    if not os.path.isdir(folder):
        return f"--output {output}: {folder} is a file, not a folder; choose another path"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--output {output}: cannot write in {folder} (permission denied); choose a path you can write to"
    try:  # what access() cannot tell (root, read-only or special file systems); the probe is removed at once
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return f"--output {output}: cannot write in {folder} ({e.strerror or e}); choose a path you can write to"
    return None


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the model's config (.toml)")
    parser.add_argument("--checkpoint", required=True, help="the trained weights (.pth)")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        check_opset(args.opset)
        require_export_packages()
        problem = output_problem(args.output)
        if problem:
            raise ExportError(problem)
        network, family, spec = load_configured(args.config, args.checkpoint)
        model = export_onnx(network, spec, args.opset)
    except (ExportError, ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        checks = verify_export(model, network, family.recipes(spec)[0])
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        write_bytes(args.output, model)
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({len(model) / 2 ** 20:.1f} MiB, opset {args.opset}); checked with onnxruntime:")
    for line in checks:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
