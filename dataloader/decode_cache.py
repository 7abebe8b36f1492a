"""An optional cache of decoded training images (`data.decode_cache`).

Decoding the 1-2 MP foreground and alpha PNG / JPEG files is about half of the published
data pipeline's time. With a cache folder set, each file is decoded once and stored raw as
.npy; later reads memory-map it (the page cache shares it between workers). Lossless: the
arrays are what the decoder gave. Keys cover path, size and modification time, so an edited
file is decoded again. About 5 MB per Adobe foreground with its alpha (2.2 GB for all 431).
"""
import hashlib
import os
from typing import Optional

import numpy as np

from utils.atomic import atomic_file
from utils.io.images import read_uint8


class DecodeCache:
    def __init__(self, folder: Optional[str]):
        self.folder = folder or None
        if self.folder:
            os.makedirs(self.folder, exist_ok=True)

    def _cache_path(self, path: str, grey: bool) -> str:
        stat = os.stat(path)
        key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{'grey' if grey else 'colour'}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return os.path.join(self.folder, digest[:2], digest + ".npy")

    def read(self, path: str, grey: bool = False) -> np.ndarray:
        """As read_uint8(path, grey), from the cache when it holds the file."""
        if not self.folder:
            return read_uint8(path, grey)
        try:
            cached = self._cache_path(path, grey)
        except OSError:
            return read_uint8(path, grey)  # raises the reader's message naming the file
        try:
            return np.load(cached, mmap_mode="r")
        except (OSError, ValueError):
            image = read_uint8(path, grey)
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            with atomic_file(cached) as f:  # a worker never maps a half-written file
                np.save(f, image)
            return image
