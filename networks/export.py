"""Export a trained model as one self-contained ONNX file that onnxruntime runs at any image size.

python -m networks.export --config CFG --checkpoint CKPT --output FILE.onnx [--opset N]
python -m networks.export --checkpoint mmagic-gca --output mmagic-gca.onnx   # a released model by name

The graph takes `image` (uint8, H x W x 3, RGB) and `trimap` (uint8, H x W, grey: < 85
background, >= 170 foreground, else unknown) and returns `alpha` (uint8, H x W), H and W free.
Everything demo.py does around the network is inside it: ImageNet normalisation, the reflect
padding (32 px plus up to a multiple of 32), the trimap classes, forcing the known regions,
the crop and the truncation to uint8. The network runs in the form its family gives for export
(Family.export): GCA-Matting's attention, for one, runs as an ONNX Scan over the rows of its 1/16
grid, so no L x L score volume is ever allocated; the full-resolution layers run on the whole
image (no stripes), so memory grows with the image: about 6.6 GiB at 3840x2160 on onnxruntime's
CPU provider for GCA-Matting (README, "ONNX export"). Before writing, the exporter runs the
graph on onnxruntime at two sizes and compares it with PyTorch's alpha (demo.py's); the file
is written (atomically) only when they agree. Ctrl-C or SIGTERM stops it with one line and exit
code 130 / 143, no file written. Needs requirements-export.txt.
"""
import argparse
import contextlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
import warnings
from functools import partial
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from networks.families import family_of, family_spec, load_configured
from utils.atomic import WriteError, write_bytes
from utils.checkpoint import CheckpointError
from utils.config import DEFAULT_FAMILY, ConfigError, ModelSpec
from utils.inference.predict import predict_alpha
from utils.recipe import Recipe, RecipeForward
from utils.signals import run_until_stopped

INPUT_NAMES, OUTPUT_NAME = ("image", "trimap"), "alpha"
# The exported file's metadata: the model's family and its config keys' values (JSON), which make its
# recipe; files of the version before family keys name the trimap channels alone.
FAMILY_KEY, VALUES_KEY, TRIMAP_CHANNEL_KEY = "model.family", "model.values", "model.trimap_channel"
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
    the family and its settings (for the recipe's messages in demo.py --onnx)."""
    check_opset(opset)
    require_export_packages()
    family = family_of(spec)
    if isinstance(family.export, str):
        raise ExportError(f"{family.title}: {family.export}")
    graph = DemoGraph(family.export(network), family.recipes(spec)[0])
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
    for key, value in ((FAMILY_KEY, spec.family), (VALUES_KEY, json.dumps(dict(spec.values)))):
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
        try:
            spec = exported_spec(metadata)
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


def exported_spec(metadata: Dict[str, str]) -> ModelSpec:
    """The spec an exported file's metadata describes (a file without a family is GCA-Matting's, as
    the first exports were). ValueError for a family or settings this version does not have."""
    family = metadata.get(FAMILY_KEY, DEFAULT_FAMILY)
    if VALUES_KEY in metadata:
        return family_spec(family, json.loads(metadata[VALUES_KEY]), "the file's metadata")
    channels = {TRIMAP_CHANNEL_KEY: int(metadata[TRIMAP_CHANNEL_KEY])} if TRIMAP_CHANNEL_KEY in metadata else {}
    return family_spec(family, channels, "the file's metadata")


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
    parser.add_argument("--config", default=None,
                        help="the model's config (.toml); the released model's own where --checkpoint names one")
    parser.add_argument("--checkpoint", required=True,
                        help="the trained weights (.pth), or a released model's name (python -m networks.models)")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    # the file is written atomically at the end: a stopped export leaves none
    return run_until_stopped(partial(run, args), lambda: f"{args.output} not written; run the same command again")


def run(args: argparse.Namespace) -> int:
    """The command's work; the exit code."""
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
