import os
import resource

import numpy as np
import pytest

from utils.atomic import WriteError
from utils.io.images import ImageReadError, read_first_channel, read_grey, read_image, read_uint8, write_image


def test_written_image_reads_back_with_the_usual_file_mode(tmp_path, rng):
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = str(tmp_path / "ü.png")
    write_image(path, image)
    assert np.array_equal(read_uint8(path), image)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["ü.png"]


def test_a_failed_write_leaves_no_file_and_names_path_and_reason(tmp_path, rng):
    image = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)  # noise: ~120 kB as PNG
    old = tmp_path / "old.png"
    write_image(str(old), image[:4, :4])
    before = old.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Python ignores SIGXFSZ, so a write over the limit fails with EFBIG as on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        for path in (tmp_path / "new.png", old):
            with pytest.raises(WriteError) as caught:
                write_image(str(path), image)
            assert str(path) in str(caught.value) and "File too large" in str(caught.value)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert os.listdir(tmp_path) == ["old.png"] and old.read_bytes() == before



@pytest.mark.parametrize("cut", ["half", "the IEND chunk"])
def test_a_truncated_png_gets_the_projects_message_and_no_libpng_line(tmp_path, rng, capfd, cut):
    path = tmp_path / "photo.png"
    write_image(str(path), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if cut == "half" else data[:-12])
    for read in (read_image, read_grey, read_first_channel):
        with pytest.raises(ImageReadError, match=f"{path}: not a readable image \\(a PNG file cut short"):
            read(str(path))
    assert "libpng" not in capfd.readouterr().err


def test_a_png_with_bytes_after_its_end_still_reads(tmp_path, rng):
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    write_image(str(path), image)
    path.write_bytes(path.read_bytes() + b"trailing bytes of a careless tool")
    assert np.array_equal(read_image(str(path)), image)
