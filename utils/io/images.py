"""Reading images and trimaps the way the published code does (OpenCV, BGR), but also
accepting grey, RGBA and 16-bit files, and unicode paths; writing them atomically."""
import os
import re
from typing import Iterable, List

import cv2
import numpy as np

from utils.atomic import WriteError, write_bytes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# A file that cannot be decoded gets an ImageReadError naming it; OpenCV's own "[ WARN ]"
# lines about it would only repeat that without the file name.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class ImageReadError(IOError):
    pass


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_cut_short(data: np.ndarray) -> bool:
    """Whether PNG file bytes end before their IEND chunk. libpng prints its own "libpng error"
    line to the terminal on such a file, before the project's message, so it is not decoded."""
    position = len(PNG_SIGNATURE)
    while position + 8 <= data.size:
        length = int.from_bytes(data[position:position + 4].tobytes(), "big")
        if data[position + 4:position + 8].tobytes() == b"IEND":
            return position + 12 > data.size
        position += 12 + length
    return True


def _decode(path: str, flags: int) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(f"{path}: cannot be read ({e.strerror or e})") from None
    if data[:len(PNG_SIGNATURE)].tobytes() == PNG_SIGNATURE and png_cut_short(data):
        raise ImageReadError(f"{path}: not a readable image (a PNG file cut short: truncated)")
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (empty, truncated or an unknown format)")
    return image


def to_8bit_range(image: np.ndarray) -> np.ndarray:
    """uint8 stays as it is; 16-bit is scaled (not truncated) to float32 on the 0..255 scale."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(257.0)
    raise ImageReadError(f"unsupported pixel type {image.dtype}; use 8- or 16-bit images")


def read_image(path: str) -> np.ndarray:
    """H x W x 3 BGR. Grey files are replicated to three channels and an alpha channel is
    dropped, as cv2.imread(path) does; 16-bit files come back as float32 on the 0..255 scale."""
    image = _decode(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    try:
        return to_8bit_range(image)
    except ImageReadError as e:
        raise ImageReadError(f"{path}: {e}") from None


def read_grey(path: str) -> np.ndarray:
    """H x W grey as cv2.imread(path, 0) gives it (colour converted by luminance); 16-bit files
    come back as float32 on the 0..255 scale."""
    image = _decode(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    try:
        return to_8bit_range(image)
    except ImageReadError as e:
        raise ImageReadError(f"{path}: {e}") from None


def read_uint8(path: str, grey: bool = False) -> np.ndarray:
    """8-bit BGR (or grey) exactly as cv2.imread(path) / cv2.imread(path, 0) gives it, as the
    published training code reads its data; raises ImageReadError naming the file."""
    return _decode(path, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)


def read_first_channel(path: str) -> np.ndarray:
    """H x W on the 0..255 scale for the metrics: a colour file gives its first channel as
    MATLAB's imread orders them (red), as the reference evaluation does; 16-bit is scaled."""
    image = _decode(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if image.ndim == 3:
        image = image[:, :, 2] if image.shape[2] >= 3 else image[:, :, 0]
    try:
        return to_8bit_range(image)
    except ImageReadError as e:
        raise ImageReadError(f"{path}: {e}") from None


def write_image(path: str, image: np.ndarray) -> None:
    """cv2.imwrite that accepts unicode paths, encodes in memory and writes atomically
    (utils.atomic): a failed write (a full disk) leaves no partial file and raises WriteError
    naming the path and the reason."""
    ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", image)
    if not ok:
        raise WriteError(f"{path}: could not encode the image")
    write_bytes(path, encoded.tobytes())


def list_images(folder: str) -> List[str]:
    """Sorted file names in `folder` with an image extension (hidden files left out)."""
    return sorted(name for name in os.listdir(folder)
                  if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS))


def stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


COMPOSITION_SUFFIX = re.compile(r"_\d+$")


def composition_base(name_stem: str) -> str:
    """`<stem>` of a Composition-1K merged image `<stem>_<k>` (other stems unchanged)."""
    return COMPOSITION_SUFFIX.sub("", name_stem)


def index_by_stem(names: Iterable[str]) -> dict:
    """stem -> list of file names with that stem."""
    index: dict = {}
    for name in names:
        index.setdefault(stem(name), []).append(name)
    return index
