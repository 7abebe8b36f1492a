import cv2
import numpy as np
import pytest
import torch

from utils.image_io import ImageReadError, read_grey, read_image
from utils.preprocess import (alpha_to_uint8, classes_to_tensor, force_known_regions, image_to_tensor,
                              inference_padding, reflect_pad, trimap_to_classes)


@pytest.mark.parametrize("size,expected", [
    ((512, 512), ((32, 32), (32, 32))),
    ((500, 480), ((32, 44), (32, 32))),
    ((33, 1), ((32, 63), (32, 63))),
    ((64, 65), ((32, 32), (32, 63))),
])
def test_padding_sizes(size, expected):
    padding = inference_padding(*size)
    assert padding == expected
    assert (size[0] + sum(padding[0])) % 32 == 0 and (size[1] + sum(padding[1])) % 32 == 0


def test_reflect_padding_mirrors_without_repeating_the_edge():
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    padded = reflect_pad(array, ((1, 0), (0, 2)))
    assert padded.tolist() == [[3, 4, 5, 4, 3], [0, 1, 2, 1, 0], [3, 4, 5, 4, 3]]
    image = np.zeros((2, 3, 3), np.uint8)
    assert reflect_pad(image, ((1, 1), (1, 1))).shape == (4, 5, 3)


def test_trimap_thresholds():
    trimap = np.array([[0, 84, 85, 128, 169, 170, 255]], np.uint8)
    assert trimap_to_classes(trimap).tolist() == [[0, 0, 1, 1, 1, 2, 2]]
    scaled16 = np.array([[84.9, 85.0, 169.99, 170.0]], np.float32)
    assert trimap_to_classes(scaled16).tolist() == [[0, 1, 1, 2]]


def test_trimap_tensors_for_both_channel_layouts():
    classes = np.array([[0, 1, 2]])
    one_hot = classes_to_tensor(classes, 3)
    assert one_hot.shape == (3, 1, 3) and one_hot[:, 0, 1].tolist() == [0, 1, 0]
    single = classes_to_tensor(classes, 1)
    assert single.shape == (1, 1, 3) and single.tolist() == [[[0.0, 1.0, 2.0]]]


def test_image_normalisation_is_rgb_imagenet():
    bgr = np.array([[[0, 128, 255]]], np.uint8)
    tensor = image_to_tensor(bgr)
    expected = (torch.tensor([255, 128, 0]) / 255. - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(tensor[:, 0, 0], expected)


def test_known_regions_are_forced_and_alpha_truncated():
    alpha = torch.tensor([[[[0.3, 0.3, 0.999, 0.5]]]])
    classes = torch.tensor([[[[0, 2, 1, 1]]]])
    force_known_regions(alpha, classes)
    assert alpha.flatten().tolist() == pytest.approx([0.0, 1.0, 0.999, 0.5])
    assert alpha_to_uint8(alpha.numpy()).flatten().tolist() == [0, 255, 254, 127]


def test_grey_rgba_and_16_bit_images_are_read_as_bgr(tmp_path, rng):
    bgr = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([bgr, np.full((5, 4), 7, np.uint8)]))
    assert np.array_equal(read_image(str(tmp_path / "rgba.png")), bgr)
    grey = bgr[:, :, 0]
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    assert np.array_equal(read_image(str(tmp_path / "grey.png")), np.dstack([grey] * 3))
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257)
    deep = read_image(str(tmp_path / "deep.png"))
    assert deep.dtype == np.float32 and np.array_equal(deep, bgr.astype(np.float32))
    cv2.imwrite(str(tmp_path / "deep_grey.png"), grey.astype(np.uint16) * 257)
    assert np.array_equal(read_grey(str(tmp_path / "deep_grey.png")), grey.astype(np.float32))


def test_16_bit_is_scaled_not_truncated(tmp_path):
    cv2.imwrite(str(tmp_path / "t.png"), np.array([[65535, 32896, 0]], np.uint16))
    assert read_grey(str(tmp_path / "t.png")).tolist() == [[255.0, 128.0, 0.0]]


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(str(tmp_path / "broken.png"))
    with pytest.raises(ImageReadError, match="missing.png"):
        read_grey(str(tmp_path / "missing.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png"):
        read_image(str(tmp_path / "empty.png"))
