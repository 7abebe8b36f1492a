import cv2
import numpy as np
import pytest
import torch

from utils.io.images import ImageReadError, read_grey, read_image
from utils.inference.preprocess import image_to_tensor, trimap_to_classes, trimap_to_tensor
from utils.recipe import (Padding, Recipe, exact_background, exact_foreground, exact_labels, exact_one_hot, grey_unit,
                          imagenet_normalised, imagenet_normalised_255, threshold_background, threshold_foreground)


@pytest.mark.parametrize("size,expected", [
    ((512, 512), ((32, 32), (32, 32))),
    ((500, 480), ((32, 44), (32, 32))),
    ((33, 1), ((32, 63), (32, 63))),
    ((64, 65), ((32, 32), (32, 63))),
])
def test_gca_matting_demo_padding_sizes(size, expected):
    padding = Padding(multiple=32, margin=32)
    assert (padding.sides(size[0]), padding.sides(size[1])) == expected
    assert (size[0] + sum(expected[0])) % 32 == 0 and (size[1] + sum(expected[1])) % 32 == 0


def test_padding_sides_bottom_right_and_centred():
    assert Padding(multiple=32).sides(45) == (0, 19)
    assert Padding(multiple=32, centred=True).sides(45) == (9, 10)
    assert Padding(multiple=32, centred=True).sides(64) == (0, 0)


@pytest.mark.parametrize("margin,centred", [(32, False), (0, False), (0, True)])
def test_reflect_padding_is_numpys_for_any_length(margin, centred):
    padding = Padding(multiple=32, margin=margin, centred=centred)
    for size in (1, 2, 3, 5, 31, 32, 33, 45, 70, 97):
        before, after = padding.sides(size)
        expected = np.pad(np.arange(size), (before, after), mode="reflect")
        assert padding.indices(size, torch.device("cpu")).tolist() == expected.tolist(), size


def test_symmetric_padding_is_opencvs_border_reflect():
    padding = Padding(multiple=32, centred=True, edge="symmetric")
    for size in (3, 5, 20, 45, 70):
        before, after = padding.sides(size)
        row = np.arange(size, dtype=np.float32)[None]
        expected = cv2.copyMakeBorder(row, 0, 0, before, after, cv2.BORDER_REFLECT)[0]
        assert padding.indices(size, torch.device("cpu")).tolist() == expected.astype(int).tolist(), size
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    padded = Padding(multiple=8, centred=True, edge="symmetric").pad(torch.from_numpy(image)).numpy()
    assert np.array_equal(padded, cv2.copyMakeBorder(image, 2, 2, 1, 2, cv2.BORDER_REFLECT))


def test_reflect_padding_mirrors_without_repeating_the_edge():
    array = torch.arange(6).reshape(2, 3)
    padded = Padding(multiple=4).pad(array)
    assert padded.tolist() == [[0, 1, 2, 1], [3, 4, 5, 4], [0, 1, 2, 1], [3, 4, 5, 4]]
    assert Padding(multiple=4).crop(padded, 2, 3).tolist() == array.tolist()


def test_trimap_thresholds():
    trimap = np.array([[0, 84, 85, 128, 169, 170, 255]], np.uint8)
    assert trimap_to_classes(trimap).tolist() == [[0, 0, 1, 1, 1, 2, 2]]
    scaled16 = np.array([[84.9, 85.0, 169.99, 170.0]], np.float32)
    assert trimap_to_classes(scaled16).tolist() == [[0, 1, 1, 2]]


def test_trimap_tensors_for_both_channel_layouts():
    grey = np.array([[0, 128, 255]], np.uint8)
    one_hot = trimap_to_tensor(grey, 3)
    assert one_hot.shape == (3, 1, 3) and one_hot[:, 0, 1].tolist() == [0, 1, 0]
    single = trimap_to_tensor(grey, 1)
    assert single.shape == (1, 1, 3) and single.tolist() == [[[0.0, 1.0, 2.0]]]


def test_exact_trimap_encodings_leave_other_greys_classless_or_raw():
    grey = torch.tensor([[0, 1, 2, 77, 128, 200, 255]], dtype=torch.uint8)
    assert exact_one_hot(grey)[:, 0].t().tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0],
                                                      [0, 0, 0], [0, 0, 1]]
    assert exact_labels(grey)[0, 0].tolist() == [0, 1, 2, 77, 1, 200, 2]
    assert grey_unit(grey)[0, 0].tolist() == pytest.approx([v / 255 for v in (0, 1, 2, 77, 128, 200, 255)])


def test_image_normalisations():
    rgb = torch.tensor([[[255, 128, 0]]], dtype=torch.uint8)
    expected = (torch.tensor([255, 128, 0]) / 255. - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.equal(imagenet_normalised(rgb)[:, 0, 0], expected)
    assert torch.equal(image_to_tensor(np.array([[[0, 128, 255]]], np.uint8))[:, 0, 0], expected)
    mmagic = (torch.tensor([255., 128., 0.]) - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])
    assert torch.equal(imagenet_normalised_255(rgb)[:, 0, 0], mmagic)


def recipe(foreground, background, rounding):
    return Recipe("test", imagenet_normalised, None, Padding(multiple=4), foreground, background, rounding)


def test_known_regions_are_forced_after_the_crop_and_the_clamp():
    trimap = torch.tensor([[0, 255, 128, 128, 100, 200]], dtype=torch.uint8)
    padded = torch.tensor([[[[0.3, 0.3, 1.2, 0.5, 0.4, 0.6, 9.0, 9.0]]]])
    thresholds = recipe(threshold_foreground, threshold_background, "truncate").finish(padded, trimap)
    assert thresholds[0].tolist() == pytest.approx([0.0, 1.0, 1.0, 0.5, 0.4, 1.0])
    exact = recipe(exact_foreground, exact_background, "round").finish(padded, trimap)
    assert exact[0].tolist() == pytest.approx([0.0, 1.0, 1.0, 0.5, 0.4, 0.6])


def test_truncation_and_rounding():
    alpha = torch.tensor([0.0, 1.0, 0.999, 0.5, 0.5 / 255 * 3])
    assert recipe(exact_foreground, exact_background, "truncate").to_uint8(alpha).tolist() == [0, 255, 254, 127, 1]
    assert recipe(exact_foreground, exact_background, "round").to_uint8(alpha).tolist() == [0, 255, 255, 128, 2]


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
