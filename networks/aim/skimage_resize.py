"""scikit-image's `transform.resize(image, (rows, cols))` with its default arguments (bilinear,
clipped to the input's range, the input converted as img_as_float does: uint8 times 1 / 255 in
float64), in NumPy and OpenCV, so that published code that calls it can be reproduced without
scikit-image's dependencies. Its defaults changed between releases; two behaviours:

"skimage-0.14" (0.14.x, the version AIM's requirements pin): no anti-aliasing; mode 'constant'
(zeros beyond the border, so an upscaled map darkens along its edges); warp's bilinear
interpolation at the source position scale * (i + 0.5) - 0.5 through the transform 0.14
estimates (with its rounding), in float64; the clip keeps exact zeros when 0 lies outside the
input's range.

"skimage-0.19" (0.19 to 0.26, what pip installs today; 0.15 to 0.18 compute the same through warp):
before downscaling, a Gaussian filter with sigma max(0, (scale - 1) / 2) per axis; mode
'reflect' (mirrored without repeating the edge pixel) in the filter and the interpolation;
scipy.ndimage.zoom's bilinear weights; a float32 input gives float32.
"""
import math
from typing import Tuple

import cv2
import numpy as np

from utils.evaluation.metrics_aim500 import filter_axis, gaussian_taps

SKIMAGE_RESIZES = ("skimage-0.14", "skimage-0.19")
# scipy.ndimage.gaussian_filter's default radius, in standard deviations.
GAUSSIAN_TRUNCATE = 4.0


def as_float(image: np.ndarray) -> np.ndarray:
    """img_as_float: an integer image times 1 / its type's maximum in float64; a float one as it is."""
    if np.issubdtype(image.dtype, np.integer):
        return np.multiply(image, 1.0 / np.iinfo(image.dtype).max, dtype=np.float64)
    return image


def clip_to_input(out: np.ndarray, image: np.ndarray, keep_zeros: bool) -> np.ndarray:
    """The output clipped to the input's [min, max], in place; with keep_zeros (mode 'constant',
    cval 0) an exact 0 outside that range stays 0, as skimage's _clip_warp_output keeps cval."""
    low, high = image.min(), image.max()
    zeros = out == 0 if keep_zeros and not low <= 0 <= high else None
    np.clip(out, low, high, out=out)
    if zeros is not None:
        out[zeros] = 0
    return out


def normalising_matrix(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(the similarity that centres 2-D points and scales their RMS distance to sqrt(2), the points
    so moved), as the DLT estimate normalises its correspondences."""
    centroid = points.mean(axis=0)
    scale = math.sqrt(2) / math.sqrt(np.sum((points - centroid) ** 2) / len(points))
    matrix = np.array([[scale, 0, -scale * centroid[0]], [0, scale, -scale * centroid[1]], [0, 0, 1]])
    moved = matrix @ np.vstack([points.T, np.ones(len(points))])
    return matrix, (moved[:2] / moved[2]).T


def resize_transform_014(shape_in: Tuple[int, int], shape_out: Tuple[int, int]) -> np.ndarray:
    """The 3 x 3 map from output (column, row) to input position skimage 0.14's resize warps with: an
    affine transform estimated through an SVD (normalised DLT) from three output corners and their
    positions scale * (i + 0.5) - 0.5, then its shear set to 0. Its rounding (not the exact scale
    and offset) decides where a position that is an integer in exact arithmetic lands."""
    (rows_in, columns_in), (rows, columns) = shape_in, shape_out
    if rows == 1 and columns == 1:
        return np.array([[1.0, 0, columns_in / 2 - 0.5], [0, 1.0, rows_in / 2 - 0.5], [0, 0, 1]])
    output = np.array([[0, 0], [0, rows - 1], [columns - 1, rows - 1]])
    source = np.stack([columns_in / columns * (output[:, 0] + 0.5) - 0.5,
                       rows_in / rows * (output[:, 1] + 0.5) - 0.5], 1)
    (output_matrix, output_points), (source_matrix, source_points) = map(normalising_matrix, (output, source))
    (x, y), (u, v) = output_points.T, source_points.T
    zero, one = np.zeros(3), np.ones(3)
    system = np.vstack([np.stack([x, y, one, zero, zero, zero, u], 1), np.stack([zero, zero, zero, x, y, one, v], 1)])
    solution = np.linalg.svd(system)[2][-1]
    affine = np.vstack([-solution[:-1].reshape(2, 3) / solution[-1], [0, 0, 1]])
    transform = np.linalg.inv(source_matrix) @ (affine @ output_matrix)
    transform[2], transform[0, 1], transform[1, 0] = (0, 0, 1), 0, 0
    return transform


def warp_positions(scale: float, offset: float, size_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(floor, ceil, fraction) of the source positions scale * i + offset warp samples along one axis."""
    position = scale * np.arange(size_out) + offset
    low = np.floor(position)
    return low.astype(np.int64), np.ceil(position).astype(np.int64), position - low


def constant_gather(image: np.ndarray, indices: np.ndarray, axis: int) -> np.ndarray:
    """image.take(indices, axis) with 0 for an index outside the image (mode 'constant')."""
    inside = (indices >= 0) & (indices < image.shape[axis])
    taken = np.take(image, np.clip(indices, 0, image.shape[axis] - 1), axis=axis)
    shape = [1] * image.ndim
    shape[axis] = len(indices)
    return np.where(inside.reshape(shape), taken, 0.0)


def resize_014(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """skimage 0.14's resize: (1 - dr) * top + dr * bottom, top = (1 - dc) * left + dc * right
    (its Cython bilinear_interpolation), float64."""
    image = as_float(image).astype(np.float64, copy=False)
    transform = resize_transform_014(image.shape[:2], (height, width))
    rows = warp_positions(transform[1, 1], transform[1, 2], height)
    columns = warp_positions(transform[0, 0], transform[0, 2], width)
    fraction_c = columns[2].reshape((1, -1) + (1,) * (image.ndim - 2))
    left, right = constant_gather(image, columns[0], 1), constant_gather(image, columns[1], 1)
    across = (1 - fraction_c) * left + fraction_c * right
    fraction_r = rows[2].reshape((-1,) + (1,) * (image.ndim - 1))
    top, bottom = constant_gather(across, rows[0], 0), constant_gather(across, rows[1], 0)
    return clip_to_input((1 - fraction_r) * top + fraction_r * bottom, image, keep_zeros=True)


def mirror(position: np.ndarray, size: int) -> np.ndarray:
    """A position reflected about the edge pixels' centres (scipy.ndimage's 'mirror', skimage's
    'reflect') as scipy's map_coordinate does it, for positions less than a period outside: a
    float position between size - 1 and size stays (its second neighbour is mirrored instead)."""
    if size == 1:
        return np.zeros_like(position)
    position = np.where(position < 0, -position, position)
    return np.where(position >= size, 2 * size - 2 - position, position)


def zoom_weights(size_in: int, size_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first index, second index, first weight, second weight) of scipy.ndimage.zoom's order-1
    interpolation with grid_mode along one axis: position (i + 0.5) * in / out - 0.5, mirrored;
    weights 1 - t and 1 minus that (scipy makes the last weight the rest of 1)."""
    position = mirror((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, size_in)
    start = np.floor(position)
    first = 1.0 - (position - start)
    start = start.astype(np.int64)
    return start, mirror(start + 1, size_in), first, 1.0 - first


def gaussian_prefilter(image: np.ndarray, sigmas: Tuple[float, float]) -> np.ndarray:
    """scipy.ndimage.gaussian_filter with mode 'mirror' (OpenCV's BORDER_REFLECT_101): axis 0, then
    axis 1, each pass stored in the image's type; an axis with sigma 0 is left alone."""
    for axis, sigma in enumerate(sigmas):
        if sigma > 0:
            image = filter_axis(image, gaussian_taps(sigma, GAUSSIAN_TRUNCATE)[0], axis, cv2.BORDER_REFLECT_101,
                                image.dtype)
    return image


def resize_019(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """skimage 0.19+'s resize: anti-aliasing when any axis shrinks, then ndimage.zoom's sum over
    the four neighbours of value x row weight x column weight, in that order."""
    converted = as_float(image)
    scales = (image.shape[0] / height, image.shape[1] / width)
    filtered = converted
    if height < image.shape[0] or width < image.shape[1]:
        filtered = gaussian_prefilter(converted, tuple(max(0.0, (s - 1) / 2) for s in scales))
    rows, columns = zoom_weights(image.shape[0], height), zoom_weights(image.shape[1], width)
    extra = (1,) * (image.ndim - 2)
    out = np.zeros((height, width) + image.shape[2:])
    for row, row_weight in ((rows[0], rows[2]), (rows[1], rows[3])):
        for column, column_weight in ((columns[0], columns[2]), (columns[1], columns[3])):
            value = filtered[row][:, column].astype(np.float64)
            out += value * row_weight.reshape((-1, 1) + extra) * column_weight.reshape((1, -1) + extra)
    return clip_to_input(out, converted, keep_zeros=False).astype(converted.dtype, copy=False)


def resize_like_skimage(image: np.ndarray, height: int, width: int, behaviour: str = "skimage-0.14") -> np.ndarray:
    """skimage.transform.resize(image, (height, width)) as `behaviour` (SKIMAGE_RESIZES) computes it,
    for an H x W or H x W x C image: float64 (float32 for a float32 input with skimage-0.19)."""
    if behaviour not in SKIMAGE_RESIZES:
        raise ValueError(f"the resize behaviour must be one of {', '.join(SKIMAGE_RESIZES)}, got {behaviour!r}")
    return (resize_014 if behaviour == "skimage-0.14" else resize_019)(image, height, width)
