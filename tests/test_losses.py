"""The optional training losses against hand-computed cases and against the published formulas
(spec: data-and-training.md, "Loss and optimisation") transcribed literally."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from networks.gca_matting.losses import (charbonnier_loss, composition_loss, gabor_loss, gradient_loss,
                                        matting_losses, regression_loss)


def grid(rows) -> torch.Tensor:
    """1 x 1 x H x W float32 tensor of the nested list `rows`."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def impulse_3x3() -> torch.Tensor:
    """1 x 1 x 3 x 3 zeros with a 1 in the centre."""
    return grid([[0, 0, 0], [0, 1, 0], [0, 0, 0]])


@pytest.fixture
def random_case():
    """Float64 alpha, gt, fg, bg, image (2 x {1,3} x 17 x 19) and a random 0/1 mask w."""
    generator = torch.Generator().manual_seed(0)

    def draw(channels: int) -> torch.Tensor:
        return torch.rand(2, channels, 17, 19, generator=generator, dtype=torch.float64)

    return {"pred": draw(1), "gt": draw(1), "fg": draw(3) * 2 - 1, "bg": draw(3) * 2 - 1,
            "image": draw(3) * 2 - 1, "w": (draw(1) > 0.5).double()}


def correlate(image: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Zero-padded 'same' cross-correlation of N x 1 x H x W `image` with a k x k kernel,
    written as a sum of shifted copies so that it does not rely on conv2d."""
    size = kernel.shape[0]
    half = size // 2
    height, width = image.shape[2:]
    padded = F.pad(image, (half, half, half, half))
    return sum(float(kernel[u, v]) * padded[:, :, u:u + height, v:v + width]
               for u in range(size) for v in range(size))


def test_rec_hand_computed():
    # |pred - gt| = [0.2, 0, 0.5, 1]; w = [1, 1, 0, 1] -> (0.2 + 0 + 1) / 3 = 0.4
    loss = regression_loss(grid([[0.2, 0.5], [1, 0]]), grid([[0, 0.5], [0.5, 1]]), grid([[1, 1], [0, 1]]))
    assert loss.item() == pytest.approx(0.4, rel=1e-6)


def test_comp_hand_computed():
    # fg = (1, 2, 3) per channel, bg = 0, image = 0, alpha = [[1, 0], [0.5, 0.5]], w = [[1, 0], [1, 0]]:
    # pixel (0,0) gives 1 + 2 + 3 = 6, pixel (1,0) 0.5 + 1 + 1.5 = 3; (6 + 3) / sum(w) = 9 / 2 = 4.5
    fg = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    zeros = torch.zeros(1, 3, 2, 2)
    loss = composition_loss(grid([[1, 0], [0.5, 0.5]]), fg, zeros, zeros, grid([[1, 0], [1, 0]]))
    assert loss.item() == pytest.approx(4.5, rel=1e-6)


def test_smooth_l1_hand_computed():
    # pred w - gt w = [0.5, 0, 1, 0] (the 0s outside w still cost sqrt(1e-6) = 0.001 each):
    # (sqrt(0.250001) + sqrt(1.000001) + 0.001 + 0.001) / 3 = 1.5020015 / 3 = 0.50066717
    loss = charbonnier_loss(grid([[0.5, 0.7], [1, 0]]), torch.zeros(1, 1, 2, 2), grid([[1, 0], [1, 1]]))
    assert loss.item() == pytest.approx(0.5006671667, rel=1e-6)


def test_grad_hand_computed():
    # Centre impulse, gt 0, w on (0,0) and (0,1). Cross-correlation reads the impulse through
    # kernel entry [2,2] at (0,0): gy = 1, gx = 1 -> m = sqrt(2); and [2,1] at (0,1): gy = 2, gx = 0
    # -> m = 2. m_gt = sqrt(1e-8) = 1e-4 everywhere: (sqrt(2) + 2 - 2e-4) / 2 = 1.7070068
    weight = grid([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    loss = gradient_loss(impulse_3x3(), torch.zeros(1, 1, 3, 3), weight)
    assert loss.item() == pytest.approx(1.7070068, rel=1e-6)


def test_gabor_hand_computed():
    # Centre impulse, gt 0, w on (1,2): each response there is the kernel at x = 1, y = 0, i.e.
    # exp(-xr^2 / (2 * 0.5^2) - yr^2 / (2 * 1^2)) cos(2 pi xr / 5 + pi / 2) with xr = cos t,
    # yr = -sin t (sigma_y = sigma / gamma = 1); squared: exp(-1 - 3c^2) sin^2(2 pi c / 5), c = cos t.
    # Over t = k pi / 8 the squares repeat: c = 1 twice (0.0165667), cos pi/8 (0.0239083),
    # cos pi/4 (0.0494519) and cos 3pi/8 (0.0507296) four times each, c = 0 twice (0):
    # 2 * 0.0165667 + 4 * (0.0239083 + 0.0494519 + 0.0507296) = 0.5294925, over sum(w) = 1
    weight = grid([[0, 0, 0], [0, 0, 1], [0, 0, 0]])
    loss = gabor_loss(impulse_3x3(), torch.zeros(1, 1, 3, 3), weight)
    assert loss.item() == pytest.approx(0.5294925, rel=1e-5)


def test_rec_matches_the_spec(random_case):
    pred, gt, w = random_case["pred"], random_case["gt"], random_case["w"]
    expected = ((pred - gt).abs() * w).sum() / (w.sum() + 1e-8)
    assert regression_loss(pred, gt, w).item() == pytest.approx(expected.item(), abs=1e-6)


def test_comp_matches_the_spec(random_case):
    a, fg, bg, image, w = (random_case[k] for k in ("pred", "fg", "bg", "image", "w"))
    numerator = sum(((fg[:, c:c + 1] * a + bg[:, c:c + 1] * (1 - a)) * w - image[:, c:c + 1] * w).abs().sum()
                    for c in range(3))
    expected = numerator / (w.sum() + 1e-8)
    assert composition_loss(a, fg, bg, image, w).item() == pytest.approx(expected.item(), abs=1e-6)


def test_smooth_l1_matches_the_spec(random_case):
    pred, gt, w = random_case["pred"], random_case["gt"], random_case["w"]
    expected = torch.sqrt((pred * w - gt * w) ** 2 + 1e-6).sum() / (w.sum() + 1e-8)
    assert charbonnier_loss(pred, gt, w).item() == pytest.approx(expected.item(), abs=1e-6)


def test_grad_matches_the_spec(random_case):
    pred, gt, w = random_case["pred"], random_case["gt"], random_case["w"]
    sobel = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)

    def magnitude(x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(correlate(x, sobel) ** 2 + correlate(x, sobel.T) ** 2 + 1e-8)

    expected = (magnitude(pred) * w - magnitude(gt) * w).abs().sum() / (w.sum() + 1e-8)
    assert gradient_loss(pred, gt, w).item() == pytest.approx(expected.item(), abs=1e-6)


def test_gabor_matches_the_spec(random_case):
    pred, gt, w = random_case["pred"], random_case["gt"], random_case["w"]
    numerator = 0.0
    for k in range(16):
        kernel = cv2.getGaborKernel((5, 5), 0.5, k * np.pi / 8, 5, 0.5).astype(np.float32)
        numerator = numerator + ((correlate(pred, kernel) * w - correlate(gt, kernel) * w) ** 2).sum()
    expected = numerator / (w.sum() + 1e-8)
    assert gabor_loss(pred, gt, w).item() == pytest.approx(expected.item(), abs=1e-6)


def test_matting_losses_sums_the_weighted_enabled_terms(random_case):
    w = random_case["w"]
    trimap = torch.cat([torch.zeros_like(w), w, 1 - w], dim=1)
    batch = {"alpha": random_case["gt"], "trimap": trimap, "fg": random_case["fg"],
             "bg": random_case["bg"], "image": random_case["image"]}
    weights = {"rec_weight": 1.0, "comp_weight": 0.5, "smooth_l1_weight": 0.0, "grad_weight": 2.0,
               "gabor_weight": 0.0, "lap_weight": 0.0}
    losses = matting_losses(random_case["pred"], batch, weights)
    assert set(losses) == {"rec", "comp", "grad", "total"}
    expected = losses["rec"] + 0.5 * losses["comp"] + 2.0 * losses["grad"]
    assert losses["total"].item() == pytest.approx(expected.item(), abs=1e-9)
    assert losses["grad"].item() == pytest.approx(gradient_loss(random_case["pred"], batch["alpha"], w).item())
