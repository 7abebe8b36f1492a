import os
import re
import shutil

import cv2
import numpy as np
import pytest
import torch

from conftest import demo_recipe, random_gca
from matting import Matter
from utils.inference.predict import predict_alpha

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_python_example() -> str:
    """The Python API example of docs/inference.md."""
    text = open(os.path.join(ROOT, "docs", "inference.md")).read()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A folder laid out like the repository with a random-weight checkpoint at the docs' path
    and the docs' example image and trimap."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(os.path.join(ROOT, "config"), root / "config")
    model = random_gca(5)
    (root / "checkpoints" / "gca-dist-all-data").mkdir(parents=True)
    torch.save({"state_dict": model.state_dict()}, root / "checkpoints" / "gca-dist-all-data" / "gca-dist-all-data.pth")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    trimap = np.full((60, 70), 128, np.uint8)
    trimap[:15], trimap[-15:] = 0, 255
    (root / "demo" / "input_lowres").mkdir(parents=True)
    (root / "demo" / "trimap_lowres" / "Trimap3").mkdir(parents=True)
    cv2.imwrite(str(root / "demo" / "input_lowres" / "troll.png"), image)
    cv2.imwrite(str(root / "demo" / "trimap_lowres" / "Trimap3" / "troll.png"), trimap)
    return root, model.eval(), image, trimap


@pytest.mark.slow
def test_the_readme_example_runs_as_written(checkout, monkeypatch):
    root, model, image_bgr, trimap = checkout
    monkeypatch.chdir(root)
    code = readme_python_example()
    assert len([line for line in code.splitlines() if line.strip()]) == 6
    namespace = {}
    exec(compile(code, "docs/inference.md", "exec"), namespace)
    expected, _ = predict_alpha(model, demo_recipe(), image_bgr, trimap, torch.device("cpu"))
    assert np.array_equal(namespace["alpha"], expected)
    rgba = namespace["rgba"]
    assert rgba.shape == (60, 70, 4) and rgba.dtype == np.uint8


@pytest.mark.slow
def test_matter_takes_rgb_masks_and_label_trimaps(checkout):
    root, model, image_bgr, trimap = checkout
    matter = Matter(str(root / "config" / "gca-dist-all-data.toml"),
                    str(root / "checkpoints" / "gca-dist-all-data" / "gca-dist-all-data.pth"), device="cpu")
    image_rgb = image_bgr[:, :, ::-1]
    alpha = matter(image_rgb, trimap)
    assert np.array_equal(alpha, predict_alpha(model, demo_recipe(), image_bgr, trimap, torch.device("cpu"))[0])
    labels = np.select([trimap == 0, trimap == 128], [0, 1], 2).astype(np.uint8)
    assert np.array_equal(matter(image_rgb, labels), alpha)
    mask = np.zeros((60, 70), np.uint8)
    mask[20:45, 20:50] = 255
    from_mask = matter(image_rgb, mask=mask, unknown_width=4)
    assert (from_mask[:14] == 0).all() and (from_mask[27:38, 27:43] == 255).all()
    rgba = matter.cutout(image_rgb, trimap)
    assert np.array_equal(rgba[:, :, 3], alpha)
    with pytest.raises(ValueError, match="either a trimap or a mask"):
        matter(image_rgb)
    with pytest.raises(ValueError, match="nothing to matte"):
        matter(image_rgb, mask=np.zeros((60, 70), np.uint8))
    with pytest.raises(ValueError, match="same size"):
        matter(image_rgb, trimap[:30])
    with pytest.raises(ValueError, match="tta must be one of"):
        matter(image_rgb, trimap, tta="d4")


def test_matter_warns_of_a_trimap_with_too_little_known_and_names_an_out_of_memory_image(checkout, monkeypatch):
    from utils.memory import OutOfMemory
    root, _, image_bgr, trimap = checkout
    matter = Matter(str(root / "config" / "gca-dist-all-data.toml"),
                    str(root / "checkpoints" / "gca-dist-all-data" / "gca-dist-all-data.pth"), device="cpu")
    image_rgb = image_bgr[:, :, ::-1]
    with pytest.warns(UserWarning, match="only 0 % of the trimap is known foreground or background, under the 1 %"):
        matter(image_rgb, np.full(trimap.shape, 128, np.uint8))
    monkeypatch.setattr(Matter, "predict_bgr", lambda *args, **kwargs: (_ for _ in ()).throw(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2147483648 bytes")))
    with pytest.raises(OutOfMemory, match=r"the image: out of memory on this 70x60 image \(it tried to allocate "
                                          r"2.0 GiB more\)"):
        matter(image_rgb, trimap)


def test_utils_imports_no_networks_or_entry_points():
    paths = [os.path.join(folder, name) for folder, _, names in os.walk(os.path.join(ROOT, "utils"))
             for name in names if name.endswith(".py")]
    assert os.path.join(ROOT, "utils", "evaluation", "evaluate.py") in paths  # the sub-packages are read too
    for path in sorted(paths):
        source = open(path).read()
        assert not re.search(r"^\s*(from|import) (networks|dataloader|matting|demo|app|main|trainer)\b", source,
                             re.M), path


def test_demo_hands_on_the_python_api_of_matting():
    import demo
    import matting
    assert demo.Matter is matting.Matter  # `from demo import Matter`, as written before matting.py, still works
