"""Benchmark: network inference time and peak memory at 800x600 .. 3840x2160.

python -m networks.benchmark [--sizes 800x600 1920x1080 2560x1440 3840x2160] [--checkpoint CKPT]
                             [--device cpu|cuda] [--precision fp32|bf16|fp16] [--forms blocked literal]

Each size runs in a fresh process (a real photo upscaled, about 30 % unknown), through the
same `predict_alpha` the demo uses, with GCA in the memory-bounded blocked form (AUTO picks
blocks as soon as the L x L score volume would exceed the budget) and, where it fits in
memory, in the published literal form. Prints seconds (one run on the CPU; on the GPU the
second run, after a warm-up) and peak memory: peak RSS of the process on the CPU,
torch.cuda.max_memory_allocated on the GPU. Without --checkpoint the weights are random
(spectral norms converged); speed and memory do not depend on the weights.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import List, Optional

import cv2
import numpy as np
import torch

from networks import build_generator, set_gca_block
from networks.gca import AUTO, LITERAL
from networks.generator import WHOLE
from networks.ops import SpectralNorm
from utils.checkpoint import load_weights
from utils.inference import predict_alpha

# (GCA block, tail stripe rows): ours, and the published computation
FORMS = {"blocked": (AUTO, AUTO), "literal": (LITERAL, WHOLE)}


def photo_and_trimap(width: int, height: int):
    """A public-domain photo (scikit-image's astronaut) upscaled, and a trimap whose unknown
    band around a procedural alpha's soft edges covers 30 % of the image."""
    from dataloader.toy import load_photos, procedural_alpha
    from utils.benchmark_evaluate import trimap_for
    photo = cv2.resize(load_photos()[0], (width, height), interpolation=cv2.INTER_CUBIC)
    alpha = procedural_alpha(np.random.default_rng(0), height, width).astype(np.float32) / 255
    return photo, trimap_for(alpha, unknown_fraction=0.3)


def build(checkpoint: Optional[str]) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_generator("resnet_gca_encoder_29", "res_gca_decoder_22")
    if checkpoint:
        load_weights(model, checkpoint)
    else:
        with torch.no_grad():  # converge the power iterations, as training would
            for module in model.modules():
                if isinstance(module, SpectralNorm):
                    for _ in range(20):
                        module.normalized_weight()
    return model.eval()


def image_size(text: str) -> str:
    """WIDTHxHEIGHT, e.g. 1920x1080."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 32 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes as WIDTHxHEIGHT, e.g. 1920x1080 (each >= 32)")
    return f"{int(parts[0])}x{int(parts[1])}"


def run_one(size: str, form: str, checkpoint: Optional[str], device: str, precision: str) -> dict:
    width, height = (int(v) for v in size.split("x"))
    image, trimap = photo_and_trimap(width, height)
    model = build(checkpoint).to(device)
    set_gca_block(model, FORMS[form][0])
    model.stripe_rows = FORMS[form][1]
    dev = torch.device(device)
    repeats = 2 if dev.type == "cuda" else 1  # on the GPU the first run pays for kernel selection
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        alpha, _ = predict_alpha(model, image, trimap, 3, dev, precision)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    unknown = float((trimap == 128).mean())
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"size": size, "form": form, "seconds": times[-1], "peak_gb": peak / 2 ** 30, "unknown": unknown,
            "alpha_sum": int(alpha.astype(np.int64).sum())}


def literal_fits(size: str) -> bool:
    """Whether the literal form's L x L score volumes (a few alive at once) fit in free memory."""
    width, height = (int(v) for v in size.split("x"))
    length = ((height + 64 + 31) // 32 * 32 // 16) * ((width + 64 + 31) // 32 * 32 // 16)
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return 3 * 4 * length ** 2 < 0.5 * free


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=image_size,
                        default=["800x600", "1920x1080", "2560x1440", "3840x2160"])
    parser.add_argument("--forms", nargs="+", default=["blocked", "literal"], choices=list(FORMS))
    parser.add_argument("--checkpoint")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "FORM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one, args.checkpoint, args.device, args.precision)))
        return 0
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; precision {args.precision}")
    print(f"{'size':>10s} {'form':>8s} {'seconds':>8s} {'peak GB':>8s} {'unknown':>8s}")
    results = {}
    for size in args.sizes:
        for form in args.forms:
            if form == "literal" and args.device == "cpu" and not literal_fits(size):
                print(f"{size:>10s} {form:>8s}   does not fit in this machine's memory (L x L scores)")
                continue
            command = [sys.executable, "-m", "networks.benchmark", "--one", size, form,
                       "--device", args.device, "--precision", args.precision]
            if args.checkpoint:
                command += ["--checkpoint", args.checkpoint]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                why = "killed (out of memory)" if done.returncode in (-9, 137) else done.stderr.strip().splitlines()[-1:]
                print(f"{size:>10s} {form:>8s}   failed: {why}")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results[(size, form)] = result
            print(f"{size:>10s} {form:>8s} {result['seconds']:8.1f} {result['peak_gb']:8.2f} {result['unknown']:8.2f}")
        pair = results.get((size, "blocked")), results.get((size, "literal"))
        if all(pair):
            print(f"{size:>10s} blocked vs literal: {pair[1]['seconds'] / pair[0]['seconds']:.2f}x faster, "
                  f"{pair[0]['peak_gb'] / pair[1]['peak_gb']:.2f} of the memory, "
                  f"same alpha: {pair[0]['alpha_sum'] == pair[1]['alpha_sum']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
