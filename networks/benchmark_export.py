"""Benchmark: the exported ONNX graph on onnxruntime's CPU provider against PyTorch on the CPU.

python -m networks.benchmark_export [--sizes 800x600 1920x1080] [--checkpoint CKPT]
                                    [--runtimes pytorch onnxruntime] [--threads N]

Exports the GCA model (random weights with converged spectral norms unless --checkpoint, as
networks.benchmark builds it) once, then runs each size in a fresh process per runtime on
networks.benchmark's image (a real photo upscaled, about 30 % unknown): "pytorch" is
networks.benchmark's blocked row, demo.py's predict_alpha with this project's defaults;
"onnxruntime" a process that imports only numpy and onnxruntime, as a deployment would, and
runs the exported file. Prints seconds per image (one run; the onnxruntime session is created
before the clock starts), the wall time of the whole process (start-up, model loading and
data included), its peak RSS (networks.benchmark's figure for PyTorch; the kernel's VmHWM for
onnxruntime) and how far the two uint8 alphas lie apart. Needs requirements-export.txt.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

import numpy as np

from networks.benchmark import alpha_change, build, image_size, photo_and_trimap, run_measured, speed_ratio
from networks.export import ExportError, export_onnx, require_export_packages
from networks.families import load_config, model_spec
from utils.allocator import reuse_freed_memory

RUNTIMES = ("pytorch", "onnxruntime")

# The onnxruntime process: the exported file, numpy and onnxruntime, nothing of this project.
ONNXRUNTIME_CHILD = """
import json, sys, time
import numpy as np
import onnxruntime as ort
model, image, trimap, alpha_file, threads = sys.argv[1:6]
options = ort.SessionOptions()
options.intra_op_num_threads = int(threads)
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
feed = {"image": np.load(image), "trimap": np.load(trimap)}
start = time.perf_counter()
alpha = session.run(["alpha"], feed)[0]
seconds = time.perf_counter() - start
np.save(alpha_file, alpha)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_gib": peak_kib / 2 ** 20}))
"""


def child_command(runtime: str, size: str, folder: str, args: argparse.Namespace, alpha_file: str) -> List[str]:
    if runtime == "onnxruntime":
        inputs = [os.path.join(folder, f"{size}_{name}.npy") for name in ("image", "trimap")]
        return [sys.executable, "-c", ONNXRUNTIME_CHILD, os.path.join(folder, "model.onnx"), *inputs, alpha_file,
                str(args.threads)]
    command = [sys.executable, "-m", "networks.benchmark", "--one", size, "blocked", "--alpha-file", alpha_file,
               "--config", args.config, "--device", "cpu"]
    return command + (["--checkpoint", args.checkpoint] if args.checkpoint else [])


def run_child(runtime: str, size: str, folder: str, args: argparse.Namespace) -> Optional[dict]:
    """One size on one runtime in a fresh process; prints its row and returns its result with
    the uint8 alpha, or None when it failed."""
    alpha_file = os.path.join(folder, f"{size}_{runtime}.npy")
    result, why = run_measured(child_command(runtime, size, folder, args, alpha_file), alpha_file)
    if result is None:
        print(f"{size:>10s} {runtime:>12s}   failed: {why}")
        return None
    print(f"{size:>10s} {runtime:>12s} {result['seconds']:8.2f} {result['process_seconds']:9.1f} "
          f"{result['peak_gib']:8.2f}")
    return result


def save_inputs(size: str, folder: str) -> None:
    """networks.benchmark's image and trimap for `size`; the image as RGB, the graph's input."""
    width, height = (int(v) for v in size.split("x"))
    image_bgr, trimap = photo_and_trimap(width, height)
    np.save(os.path.join(folder, f"{size}_image.npy"), np.ascontiguousarray(image_bgr[:, :, ::-1]))
    np.save(os.path.join(folder, f"{size}_trimap.npy"), trimap)


def export_to(path: str, config: str, checkpoint: Optional[str]) -> int:
    network, _ = build(config, checkpoint)
    with open(path, "wb") as f:
        f.write(export_onnx(network, model_spec(load_config(config))))
    return 0


def run_all(args: argparse.Namespace, folder: str) -> int:
    """The export in a child too: a child's peak RSS (ru_maxrss, which networks.benchmark
    reports) starts from its parent's at the fork, so the parent must stay small."""
    model = os.path.join(folder, "model.onnx")
    command = [sys.executable, "-m", "networks.benchmark_export", "--export-to", model, "--config", args.config]
    start = time.perf_counter()
    subprocess.run(command + (["--checkpoint", args.checkpoint] if args.checkpoint else []), check=True)
    import onnxruntime
    import torch
    print(f"exported in {time.perf_counter() - start:.0f} s ({os.path.getsize(model) / 2 ** 20:.0f} MiB); CPU; "
          f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"onnxruntime {onnxruntime.__version__}, {args.threads} threads")
    print(f"{'size':>10s} {'runtime':>12s} {'seconds':>8s} {'process s':>9s} {'peak GiB':>8s}")
    for size in args.sizes:
        save_inputs(size, folder)
        results = {runtime: run_child(runtime, size, folder, args) for runtime in args.runtimes}
        onnx, reference = results.get("onnxruntime"), results.get("pytorch")
        if onnx and reference:
            print(f"{size:>10s} onnxruntime vs pytorch: {speed_ratio(onnx['seconds'], reference['seconds'])}, {onnx['peak_gib'] / reference['peak_gib']:.2f} of the "
                  f"memory, {alpha_change(onnx['alpha'], reference['alpha'])}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=image_size, default=["800x600", "1920x1080"])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--config", default="config/gca-dist.toml",
                        help="the model's config (default config/gca-dist.toml: GCA-Matting's GCA)")
    parser.add_argument("--checkpoint")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime's intra-op threads")
    parser.add_argument("--export-to", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        require_export_packages()
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.export_to:
        return export_to(args.export_to, args.config, args.checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        return run_all(args, folder)


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
