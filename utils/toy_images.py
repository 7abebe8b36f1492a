"""Pictures made on the spot for tests, the toy data set (dataloader.toy) and the benchmarks: real
public-domain / CC0 photos that scikit-image ships inside its wheel (read as files; scikit-image
itself is not imported, so it installs with --no-deps) and procedural alphas."""
import importlib.util
import os
from typing import List

import cv2
import numpy as np

# Public domain or CC0, per scikit-image's data documentation.
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
          "grass.png", "gravel.png", "brick.png", "camera.png")


def photo_folder() -> str:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: the toy pictures are photos from scikit-image's wheel; "
                         "install it with: pip install --no-deps scikit-image==0.26.0")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def load_photos() -> List[np.ndarray]:
    folder = photo_folder()
    photos = []
    for name in PHOTOS:
        image = cv2.imread(os.path.join(folder, name), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"error: {os.path.join(folder, name)} is missing; reinstall scikit-image==0.26.0")
        photos.append(image)
    return photos


def procedural_alpha(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 alpha: a blurred solid body, semi-transparent patches and thin strands."""
    body = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        center = (int(rng.uniform(0.3, 0.7) * width), int(rng.uniform(0.35, 0.75) * height))
        axes = (int(rng.uniform(0.12, 0.3) * width), int(rng.uniform(0.15, 0.35) * height))
        cv2.ellipse(body, center, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    body = cv2.GaussianBlur(body, (0, 0), float(rng.uniform(0.8, 3.0)))
    veil = np.zeros_like(body)
    for _ in range(int(rng.integers(1, 3))):
        center = (int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.8) * height))
        axes = (int(rng.uniform(0.05, 0.15) * width), int(rng.uniform(0.05, 0.15) * height))
        cv2.ellipse(veil, center, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.25, 0.7)), -1)
    veil = cv2.GaussianBlur(veil, (0, 0), 4.0)
    strands = np.zeros_like(body)
    edge = np.argwhere((body > 0.3) & (body < 0.7))
    for _ in range(int(rng.integers(20, 60))):
        if not len(edge):
            break
        y, x = edge[int(rng.integers(len(edge)))]
        steps = np.cumsum(rng.normal(0, 1, (25, 2)) * 3 + rng.normal(0, 4, 2), axis=0)
        points = (np.array([x, y]) + steps).astype(np.int32)
        cv2.polylines(strands, [points], False, float(rng.uniform(0.5, 1.0)), 1, cv2.LINE_AA)
    alpha = np.maximum(np.maximum(body, veil), strands)
    return np.clip(np.round(alpha * 255), 0, 255).astype(np.uint8)
