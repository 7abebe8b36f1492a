"""Allocation failures told from other errors, their size read from the message, the item named."""
import numpy as np
import pytest
import torch

from utils.memory import (OutOfMemory, attempted_bytes, fitting_size, is_out_of_memory, memory_shortfall,
                          named_out_of_memory)

GIB = 2 ** 30


def real_failures():
    """The errors numpy and torch raise for an allocation the machine cannot give (1 PiB)."""
    errors = []
    for allocate in (lambda: np.empty(2 ** 50, np.uint8), lambda: torch.empty(2 ** 50, dtype=torch.uint8)):
        try:
            allocate()
        except (MemoryError, RuntimeError) as e:
            errors.append(e)
    return errors


def test_real_numpy_and_torch_failures_are_recognised_with_their_size():
    numpy_error, torch_error = real_failures()
    assert is_out_of_memory(numpy_error) and is_out_of_memory(torch_error)
    assert attempted_bytes(str(numpy_error)) == attempted_bytes(str(torch_error)) == 2 ** 50


@pytest.mark.parametrize("error, size", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"),
     2 * GIB),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 3170893824 bytes. Error code 12"),
     3170893824),
    (MemoryError("Unable to allocate 1.50 GiB for an array with shape (9000, 11000, 3)"), int(1.5 * GIB)),
    (MemoryError(), None),
])
def test_allocation_failures_and_their_sizes(error, size):
    assert is_out_of_memory(error) and attempted_bytes(str(error)) == size


@pytest.mark.parametrize("error", [RuntimeError("the size of tensor a (3) must match"), ValueError("out of memory"),
                                   KeyError("x")])
def test_other_errors_are_not_allocation_failures(error):
    assert not is_out_of_memory(error)


def test_the_item_its_size_and_the_allocation_are_named_and_other_errors_pass():
    with pytest.raises(OutOfMemory) as caught:
        with named_out_of_memory("photos/big.jpg", 11000, 9000):
            torch.empty(2 ** 50, dtype=torch.uint8)
    assert str(caught.value) == ("photos/big.jpg: out of memory on this 11000x9000 image (it tried to allocate "
                                 "1024.0 TiB more); scale it down, or run it where more memory is free")
    with pytest.raises(ValueError, match="not this"):
        with named_out_of_memory("photos/big.jpg", 11000, 9000):
            raise ValueError("not this")


def linear_estimate(height: int, width: int) -> int:
    return 1 * GIB + height * width * 256  # 1 GiB and 256 bytes a pixel


def test_the_size_that_fits_keeps_the_shape_and_fits():
    assert memory_shortfall(1000, 1000, linear_estimate, 8 * GIB) == ""
    assert memory_shortfall(11000, 9000, None, GIB) == ""
    fits = fitting_size(11000, 9000, linear_estimate, 8 * GIB)
    width, height = (int(v) for v in fits.split("x"))
    assert abs(width / height - 11000 / 9000) < 0.01
    assert linear_estimate(height, width) <= 8 * GIB < linear_estimate(height + 10, width + 10)
    shortfall = memory_shortfall(11000, 9000, linear_estimate, 8 * GIB)
    assert shortfall == (f"this model needs about {linear_estimate(9000, 11000) / GIB:.1f} GiB at 11000x9000 and this "
                         f"process has about 8.0 GiB left: up to about {fits} (the same shape) fits")
    assert fitting_size(11000, 9000, linear_estimate, GIB // 2) is None
