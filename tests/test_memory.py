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


# ---- the user's cap (--max-memory, test.max_memory) ----
@pytest.fixture
def no_cap(monkeypatch):
    """The cap is process-wide: each test's own is undone after it."""
    from utils import memory
    monkeypatch.setattr(memory, "_cap_bytes", None)


@pytest.mark.parametrize("text, count", [("3GiB", 3 * GIB), ("2.5 GB", int(2.5e9)), ("512mib", 512 * 2 ** 20)])
def test_amounts_of_memory_are_read_with_their_units(text, count):
    from utils.memory import parse_bytes
    assert parse_bytes(text) == count


@pytest.mark.parametrize("text", ["3", "3 GiBs", "-1GiB", "0GB", "lots"])
def test_a_bad_amount_names_its_source_and_the_form(no_cap, text):
    from utils.memory import set_memory_cap
    with pytest.raises(ValueError, match=r"^--max-memory: .* is not an amount of memory: give a number and a unit"):
        set_memory_cap(text, "--max-memory")


def test_the_cap_bounds_the_memory_left_and_the_working_sets(no_cap):
    from networks.stripes import STRIPE_BUDGET_BYTES, memory_budget
    from utils.memory import _resident_bytes, cpu_memory_left, set_memory_cap
    cpu = torch.device("cpu")
    uncapped = memory_budget(cpu, STRIPE_BUDGET_BYTES)
    cap = _resident_bytes() + 64 * 2 ** 20
    set_memory_cap(f"{cap}B")
    left = cpu_memory_left()  # gives the freed memory it keeps back first: the resident memory is what is used
    assert 0 < left <= cap - _resident_bytes() + 2 ** 20  # give or take a page or two
    assert memory_budget(cpu, STRIPE_BUDGET_BYTES) <= max((left + 2 ** 20) // 8, 2 ** 20) < uncapped
    set_memory_cap(None)
    assert memory_budget(cpu, STRIPE_BUDGET_BYTES) == uncapped


def test_demo_passes_its_cap_down_to_the_attention_blocks(no_cap, tmp_path, monkeypatch):
    """A tiny demo.py run under --max-memory: GCA's score blocks get a budget within what the cap
    leaves, where without it they get their full SCORE_BUDGET_BYTES, and the alpha is the same."""
    import cv2
    import demo
    from conftest import random_gca
    from networks.gca_matting import gca
    from utils.allocator import release_freed_memory
    from utils.memory import _resident_bytes
    path = tmp_path / "gca.pth"
    torch.save({"state_dict": random_gca(2).eval().state_dict()}, str(path))
    images, trimaps = tmp_path / "images", tmp_path / "trimaps"
    images.mkdir(), trimaps.mkdir()
    rng = np.random.default_rng(0)
    trimap = np.full((64, 64), 128, np.uint8)
    trimap[:16], trimap[-16:] = 0, 255
    cv2.imwrite(str(images / "a.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    cv2.imwrite(str(trimaps / "a.png"), trimap)
    budgets = []

    def recorded(device, preferred, share):
        budgets.append(real_budget(device, preferred, share))
        return budgets[-1]
    real_budget = gca.memory_budget
    monkeypatch.setattr(gca, "memory_budget", recorded)
    alphas = []
    # The cap's own reading gives the freed memory back first: so does this one, or the earlier
    # tests' freed memory would make the cap larger than the 256 MiB it means to leave.
    release_freed_memory()
    for cap in ([], ["--max-memory", f"{_resident_bytes() + 256 * 2 ** 20}B"]):
        out = tmp_path / f"out{len(cap)}"
        assert demo.main(["--config", "config/gca-dist.toml", "--checkpoint", str(path), "--image-dir", str(images),
                          "--trimap-dir", str(trimaps), "--output", str(out), "--device", "cpu", "--no-offset",
                          *cap]) == 0
        alphas.append(cv2.imread(str(next(out.rglob("a.png"))), cv2.IMREAD_UNCHANGED))
    uncapped, capped = budgets[0], budgets[-1]  # two GCA calls per run
    assert uncapped == gca.SCORE_BUDGET_BYTES and capped <= (256 * 2 ** 20) // gca.ATTENTION_SHARE < uncapped
    assert np.array_equal(alphas[0], alphas[1])


def test_demo_refuses_a_bad_cap_in_one_line(no_cap, tmp_path, capsys):
    import demo
    assert demo.main(["--config", "config/gca-dist.toml", "--checkpoint", str(tmp_path / "none.pth"),
                      "--image-dir", str(tmp_path), "--max-memory", "lots", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --max-memory: 'lots' is not an amount of memory")


def test_the_page_refuses_a_bad_cap_in_one_line(no_cap, capsys):
    import app
    assert app.main(["--checkpoint", "none.pth", "--max-memory", "3 GiBs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --max-memory: '3 GiBs' is not an amount of memory")
