"""Benchmark: network inference time and peak memory at 800x600 .. 3840x2160.

python -m networks.benchmark [--config CFG [CFG ...]] [--sizes 800x600 1920x1080 2560x1440 3840x2160]
                             [--checkpoint CKPT] [--device cpu|cuda] [--precision fp32|bf16|fp16]
                             [--forms blocked literal] [--max-memory 3GiB]

Several configs make one table of every family's rows (e.g. --config config/gca-dist.toml
config/mmagic-dim-stage3.toml config/aematter.toml ... --sizes 1920x1080 3840x2160 --forms blocked).

Each size runs in a fresh process (a real photo upscaled, about 30 % unknown), through the
same `predict_alpha` and the config's family recipe the demo uses, in two forms: "blocked", this project's defaults (GCA in
blocks sized to the memory budget, the full-resolution tail in stripes), and, where it fits
in memory, "literal", the published computation (L x L attention, whole-image tail). Prints
seconds (one run on the CPU; on the GPU the second run, after a warm-up), the wall time of
the whole process (start-up, model build and data included), peak memory (peak
RSS of the process on the CPU, torch.cuda.max_memory_allocated on the GPU) and how far the
uint8 alphas of the two forms lie apart. With --precision bf16 / fp16 the blocked form also runs
in fp32 for the speed ratio and the largest alpha change. Without --checkpoint the weights
are random (spectral norms converged); speed and memory do not depend on the weights.

For a network with GCA the row also gives its floor: the attention's matrix products computed
directly (scores and propagation, their FLOPs counted from the shapes of this run's GCA calls:
networks.gca_matting.gca.attention_flops; the blocked form computes the scores with fewer) at the
fp32 GEMM rate of a 4096 x 4096 matmul measured in the same process, and the row's seconds over
it, so that the ratio holds on any machine. --max-memory caps each measured process as demo.py's flag does.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch

from networks.families import build_network, family_of, load_checkpoint, load_config, model_spec
from networks.gca_matting.gca import LITERAL, GuidedCxtAtten
from networks.gca_matting.generator import set_gca_block
from networks.gca_matting.spectral_norm import SpectralNorm
from networks.stripes import AUTO, WHOLE
from utils.allocator import reuse_freed_memory
from utils.memory import peak_memory_bytes, set_memory_cap
from utils.inference.predict import predict_alpha
from utils.recipe import Recipe

# (GCA block, tail stripe rows): ours, and the published computation
FORMS = {"blocked": (AUTO, AUTO), "literal": (LITERAL, WHOLE)}
# The matmul whose rate sets the floor: the rate a 2-thread fp32 GEMM reaches on large matrices.
GEMM_SIZE = 4096


def gemm_rate(size: int = GEMM_SIZE, repeats: int = 2) -> float:
    """FLOP/s of a size x size fp32 matmul on the CPU: the best of `repeats` after a warm-up."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def count_attention_flops(model: torch.nn.Module) -> List[int]:
    """A list that each GCA call of `model` appends its product_flops to (forward hooks)."""
    counted: List[int] = []
    for module in model.modules():
        if isinstance(module, GuidedCxtAtten):
            module.register_forward_hook(lambda m, inputs, output: counted.append(m.product_flops(*inputs)))
    return counted


def photo_and_trimap(width: int, height: int):
    """A public-domain photo (scikit-image's astronaut) upscaled, and a trimap whose unknown
    band around a procedural alpha's soft edges covers 30 % of the image."""
    from utils.synthetic import trimap_for
    from utils.toy_images import load_photos, procedural_alpha
    photo = cv2.resize(load_photos()[0], (width, height), interpolation=cv2.INTER_CUBIC)
    alpha = procedural_alpha(np.random.default_rng(0), height, width).astype(np.float32) / 255
    return photo, trimap_for(alpha, unknown_fraction=0.3)


def build(config: str, checkpoint: Optional[str]) -> Tuple[torch.nn.Module, Recipe]:
    """The config's network in eval mode, with the checkpoint's weights or random ones, and its
    demo recipe."""
    spec = model_spec(load_config(config))
    torch.manual_seed(0)
    model = build_network(spec)
    if checkpoint:
        load_checkpoint(model, spec, checkpoint)
    else:
        with torch.no_grad():  # converge the power iterations, as training would
            for module in model.modules():
                if isinstance(module, SpectralNorm):
                    for _ in range(20):
                        module.normalized_weight()
    return model.eval(), family_of(spec).recipes(spec)[0]


def image_size(text: str) -> str:
    """WIDTHxHEIGHT, e.g. 1920x1080."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 32 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes as WIDTHxHEIGHT, e.g. 1920x1080 (each >= 32)")
    return f"{int(parts[0])}x{int(parts[1])}"


def run_one(size: str, form: str, config: str, checkpoint: Optional[str], device: str, precision: str,
            alpha_file: Optional[str] = None, gemm_size: int = GEMM_SIZE) -> dict:
    width, height = (int(v) for v in size.split("x"))
    image, trimap = photo_and_trimap(width, height)
    model, recipe = build(config, checkpoint)
    model.to(device)
    set_gca_block(model, FORMS[form][0])
    model.stripe_rows = FORMS[form][1]
    flops = count_attention_flops(model)
    dev = torch.device(device)
    repeats = 2 if dev.type == "cuda" else 1  # on the GPU the first run pays for kernel selection
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        alpha, _ = predict_alpha(model, recipe, image, trimap, dev, precision)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    unknown = float((trimap == 128).mean())
    peak = peak_memory_bytes(dev)
    if alpha_file:
        np.save(alpha_file, alpha)
    result = {"size": size, "form": form, "seconds": times[-1], "peak_gib": peak / 2 ** 30, "unknown": unknown}
    if flops and dev.type == "cpu":
        result["flops"] = sum(flops) // repeats
        result["gemm_flops_per_s"] = gemm_rate(gemm_size)
    return result


def literal_fits(size: str, config: str) -> bool:
    """Whether the literal form's L x L score volumes (a few alive at once) fit in free memory:
    the network's own `literal_peak_bytes(height, width)` where it has one, else GCA's; True for a
    network with neither."""
    spec = model_spec(load_config(config))
    network = build_network(spec)
    width, height = (int(v) for v in size.split("x"))
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if hasattr(network, "literal_peak_bytes"):
        return network.literal_peak_bytes(height, width) < 0.5 * free
    if not any(isinstance(module, GuidedCxtAtten) for module in network.modules()):
        return True
    padding = family_of(spec).recipes(spec)[0].padding
    length = (height + sum(padding.sides(height))) // 16 * ((width + sum(padding.sides(width))) // 16)
    return 3 * 4 * length ** 2 < 0.5 * free


def alpha_change(alpha: np.ndarray, reference: np.ndarray) -> str:
    """How two uint8 alphas differ, in words."""
    levels = np.abs(alpha.astype(np.int16) - reference.astype(np.int16))
    changed = int((levels > 0).sum())
    if not changed:
        return "same alpha"
    return f"alpha differs at {changed} of {levels.size} pixels ({100 * changed / levels.size:.3g} %), by at most {levels.max()}/255"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=image_size,
                        default=["800x600", "1920x1080", "2560x1440", "3840x2160"])
    parser.add_argument("--forms", nargs="+", default=["blocked", "literal"], choices=list(FORMS))
    parser.add_argument("--config", nargs="+", default=["config/gca-dist.toml"],
                        help="the models' configs, one table (default config/gca-dist.toml: GCA-Matting's GCA)")
    parser.add_argument("--checkpoint")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--max-memory", metavar="AMOUNT", help="cap each measured process's memory (e.g. 3GiB)")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "FORM"), help=argparse.SUPPRESS)
    parser.add_argument("--alpha-file", help=argparse.SUPPRESS)
    parser.add_argument("--gemm-size", type=int, default=GEMM_SIZE, help=argparse.SUPPRESS)  # the tests' small one
    args = parser.parse_args(argv)
    try:
        set_memory_cap(args.max_memory, "--max-memory")
    except ValueError as e:
        parser.error(str(e))
    if args.one:
        print(json.dumps(run_one(*args.one, args.config[0], args.checkpoint, args.device, args.precision,
                                 args.alpha_file, args.gemm_size)))
        return 0
    with tempfile.TemporaryDirectory() as alpha_dir:
        return run_all(args, alpha_dir)


def run_size(config: str, size: str, args: argparse.Namespace, alpha_dir: str) -> List[Optional[dict]]:
    """The rows of one config at one size (each form, and fp32 beside another precision), with
    their comparisons; the results, None for a failed run."""
    runs, results = [], {}
    for form in args.forms:
        if form == "literal" and args.device == "cpu" and not literal_fits(size, config):
            print(f"{model_label(config):>20s} {size:>10s} {form:>8s}   does not fit in this machine's memory "
                  "(L x L scores)", flush=True)
            continue
        results[form] = run_child(config, size, form, args.precision, args, alpha_dir)
        runs.append(results[form])
    label = f"{model_label(config)} {size}"
    compare(label, "blocked vs literal", results.get("blocked"), results.get("literal"))
    if args.precision != "fp32" and "blocked" in args.forms:
        fp32 = run_child(config, size, "blocked", "fp32", args, alpha_dir)
        runs.append(fp32)
        compare(label, f"{args.precision} vs fp32", results.get("blocked"), fp32)
    return runs


def run_measured(command: List[str], alpha_file: str) -> Tuple[Optional[dict], str]:
    """Runs a measuring child process, which prints its result as JSON on its last line and
    saves its uint8 alpha to `alpha_file`: (the result with "alpha" and "process_seconds", the
    child's whole wall time, added; "") or (None, why it failed)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    process_seconds = time.perf_counter() - start
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None, "killed (out of memory)" if done.returncode in (-9, 137) else last_line
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["alpha"] = np.load(alpha_file)
    result["process_seconds"] = process_seconds
    return result, ""


def speed_ratio(seconds: float, reference_seconds: float) -> str:
    """'1.25x faster' or '1.25x slower' than the reference."""
    ratio = reference_seconds / seconds
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def floor_columns(result: dict) -> str:
    """'floor s' and 'x floor' of a row: the attention's products at the measured GEMM rate, and
    the row's seconds over that; blank for a network without GCA."""
    if "flops" not in result:
        return f"{'':>8s} {'':>7s}"
    floor = result["flops"] / result["gemm_flops_per_s"]
    return f"{floor:8.3g} {result['seconds'] / floor:7.3g}"


def run_child(config: str, size: str, form: str, precision: str, args: argparse.Namespace,
              alpha_dir: str) -> Optional[dict]:
    """One config, size, form and precision in a fresh process; prints its row and returns its
    result (with the uint8 alpha) or None when it failed."""
    label = form if precision == args.precision else f"{form} {precision}"
    model = model_label(config)
    alpha_file = os.path.join(alpha_dir, f"{model}_{size}_{form}_{precision}.npy")
    command = [sys.executable, "-m", "networks.benchmark", "--one", size, form, "--alpha-file", alpha_file,
               "--config", config, "--device", args.device, "--precision", precision]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    if args.max_memory:
        command += ["--max-memory", args.max_memory]
    if args.gemm_size != GEMM_SIZE:
        command += ["--gemm-size", str(args.gemm_size)]
    result, why = run_measured(command, alpha_file)
    if result is None:
        print(f"{model:>20s} {size:>10s} {label:>8s}   failed: {why}", flush=True)
        return None
    print(f"{model:>20s} {size:>10s} {label:>8s} {result['seconds']:8.1f} {result['process_seconds']:9.1f} "
          f"{result['peak_gib']:8.2f} {result['unknown']:8.2f} {floor_columns(result)}", flush=True)
    return result


def model_label(config: str) -> str:
    """A config's name for the table: its file name without .toml."""
    return os.path.splitext(os.path.basename(config))[0]


def compare(label: str, what: str, result: Optional[dict], reference: Optional[dict]) -> None:
    """The comparison line of two rows of one model and size (`label`)."""
    if result and reference:
        speed = speed_ratio(result["seconds"], reference["seconds"])
        process_ratio = reference["process_seconds"] / result["process_seconds"]
        print(f"{label:>31s} {what}: {speed} ({process_ratio:.2f}x for the whole process), "
              f"{result['peak_gib'] / reference['peak_gib']:.2f} of the memory, "
              f"{alpha_change(result['alpha'], reference['alpha'])}")


def run_all(args: argparse.Namespace, alpha_dir: str) -> int:
    """Prints the table; 1 when a run failed (named in its row), else 0."""
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    cap = f"; each process capped at {args.max_memory}" if args.max_memory else ""
    print(f"device: {name}; precision {args.precision}{cap}", flush=True)
    print(f"{'model':>20s} {'size':>10s} {'form':>8s} {'seconds':>8s} {'process s':>9s} {'peak GiB':>8s} "
          f"{'unknown':>8s} {'floor s':>8s} {'x floor':>7s}", flush=True)
    runs = []
    for config in args.config:
        for size in args.sizes:
            runs += run_size(config, size, args, alpha_dir)
    failed = sum(result is None for result in runs)
    if any(result and "flops" in result for result in runs):
        print("floor s: the GCA attention's matrix products (FLOPs counted from its shapes) at the fp32 GEMM rate "
              f"of a {args.gemm_size}^2 matmul measured in the same process; x floor: seconds / floor s")
    if failed:
        print(f"{failed} of {len(runs)} runs failed (their rows say why)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
