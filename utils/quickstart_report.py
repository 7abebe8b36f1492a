"""The quickstart's closing report: the trained model's figures beside a trivial baseline
(every unknown pixel 0.5, known regions as the trimap says), a verdict and a side-by-side
picture that includes the cutout (estimated foreground colours) over a checkerboard and over
a plain colour.

The exact figures vary from machine to machine (the CPU's instruction set and thread count
change the floating-point rounding, and 300 steps of training amplify it); the verdict, the
trained SAD against the baseline's, is what to check. Exit code 1 when it fails.

python -m utils.evaluation.quickstart_report --pred-dir P --image-dir I --alpha-dir A --trimap-dir T --out DIR
"""
import argparse
import os
import sys
from typing import List, Optional, Tuple

import cv2
import numpy as np

from utils.evaluation.evaluate import evaluate_all, mean_metrics, pair_files
from utils.cutouts.foreground import Background, checkerboard, composite, estimate_foreground
from utils.io.images import list_images, read_grey, read_image, write_image


# A working quickstart run ends far below this share of the baseline's SAD (about 0.2 to 0.25
# measured); an untrained or broken model does not.
WORKING_SAD_RATIO = 0.5


def verdict(trained_sad: float, baseline_sad: float) -> Tuple[bool, str]:
    """(passed, a line saying why): the trained SAD must be below WORKING_SAD_RATIO of the baseline's."""
    ratio = trained_sad / baseline_sad if baseline_sad > 0 else float("inf")
    passed = ratio < WORKING_SAD_RATIO
    return passed, (f"verdict: {'PASS' if passed else 'FAIL'}: the trained SAD is {ratio:.2f} of the baseline's "
                    f"({trained_sad:.3f} / {baseline_sad:.3f}); a working run is below {WORKING_SAD_RATIO:.2f}. "
                    "The figures themselves vary by machine.")


def write_baseline(trimap_dir: str, out_dir: str) -> None:
    """0.5 (128) on the unknown band, 255 / 0 on the known foreground / background."""
    os.makedirs(out_dir, exist_ok=True)
    for name in list_images(trimap_dir):
        trimap = read_grey(os.path.join(trimap_dir, name))
        baseline = np.where(trimap >= 170, 255, np.where(trimap < 85, 0, 128)).astype(np.uint8)
        write_image(os.path.join(out_dir, os.path.splitext(name)[0] + ".png"), baseline)


def checkerboard(height: int, width: int, square: int = 16) -> np.ndarray:
    """A grey checkerboard, H x W x 3 uint8: where a cutout is transparent it shows through."""
    rows, cols = np.indices((height, width)) // square
    return np.where(((rows + cols) % 2 == 0)[..., None], 200, 120).astype(np.uint8).repeat(3, axis=2)


CUTOUT_COLOUR = (60, 180, 75)  # BGR green: a colour unlike the toy photos' backgrounds


def side_by_side(image_dir: str, trimap_dir: str, pred_dir: str, triples, path: str, rows: int = 4) -> None:
    """image | trimap | prediction | ground truth | cutout over a checkerboard | cutout over a plain
    colour, one row per test image, 256 px high: old background bleeding into the cutout shows."""
    lines = []
    for name, pred_path, alpha_path, trimap_path in triples[:rows]:
        image = read_image(os.path.join(image_dir, name)).astype(np.uint8)
        alpha = read_grey(pred_path).astype(np.uint8)
        foreground = estimate_foreground(image, alpha)
        h, w = alpha.shape
        panels = [image] + [cv2.cvtColor(read_grey(p).astype(np.uint8), cv2.COLOR_GRAY2BGR)
                            for p in (trimap_path, pred_path, alpha_path)]
        backgrounds = (checkerboard(h, w), Background(colour_bgr=CUTOUT_COLOUR).fill(h, w))
        panels += [composite(foreground, alpha, background) for background in backgrounds]
        scale = 256 / image.shape[0]
        lines.append(np.hstack([cv2.resize(p, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for p in panels]))
    width = max(line.shape[1] for line in lines)
    write_image(path, np.vstack([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines]))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--pred-dir", "--image-dir", "--alpha-dir", "--trimap-dir", "--out"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    baseline_dir = os.path.join(args.out, "baseline_0.5")
    write_baseline(args.trimap_dir, baseline_dir)
    figures = {}
    for label, folder in (("trained GCA", args.pred_dir), ("baseline: unknown = 0.5", baseline_dir)):
        triples, problems = pair_files(folder, args.alpha_dir, args.trimap_dir)
        if problems:
            print("error: " + "; ".join(problems), file=sys.stderr)
            return 1
        figures[label] = mean_metrics([m for _, m, _ in evaluate_all(triples, workers=1)])[0]
    print(f"{'':26s} {'SAD':>8s} {'MSE':>8s} {'Grad':>8s} {'Conn':>8s}")
    for label, m in figures.items():
        print(f"{label:26s} {m['sad']:8.3f} {m['mse']:8.4f} {m['grad']:8.3f} {m['conn']:8.3f}")
    picture = os.path.join(args.out, "side_by_side.png")
    side_by_side(args.image_dir, args.trimap_dir, args.pred_dir, pair_files(args.pred_dir, args.alpha_dir,
                                                                            args.trimap_dir)[0], picture)
    print(f"image | trimap | prediction | ground truth | cutout over a checkerboard | over a colour: {picture}")
    passed, line = verdict(figures["trained GCA"]["sad"], figures["baseline: unknown = 0.5"]["sad"])
    print(line)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
