"""The AIM-500 authors' Grad and Conn as they wrote them (SciPy; scipy.ndimage.label, 4-connected
and numbered in raster order like their skimage.measure.label, stands in for skimage), kept as the
reference that tests/test_metrics_aim500.py checks utils.evaluation.metrics_aim500 against and that
utils.evaluation.benchmark --compare-reference times. Needs SciPy (requirements-cutout.txt)."""
import numpy as np


def authors_grad(pd: np.ndarray, gt: np.ndarray):
    """(Grad, the prediction's gradient magnitude) of compute_gradient_whole_image."""
    from scipy.ndimage import gaussian_filter
    pd_x = gaussian_filter(pd, sigma=1.4, order=[1, 0], output=np.float32)
    pd_y = gaussian_filter(pd, sigma=1.4, order=[0, 1], output=np.float32)
    gt_x = gaussian_filter(gt, sigma=1.4, order=[1, 0], output=np.float32)
    gt_y = gaussian_filter(gt, sigma=1.4, order=[0, 1], output=np.float32)
    pd_mag, gt_mag = np.sqrt(pd_x ** 2 + pd_y ** 2), np.sqrt(gt_x ** 2 + gt_y ** 2)
    return np.sum(np.square(pd_mag - gt_mag)) / 10, pd_mag


def authors_conn(pd: np.ndarray, gt: np.ndarray, step: float = 0.1) -> float:
    """compute_connectivity_loss_whole_image (its unused distance maps left out)."""
    from scipy.ndimage import label
    thresh_steps = np.arange(0, 1.1, step)
    l_map = -1 * np.ones(pd.shape, dtype=np.float32)
    for i in range(1, thresh_steps.size):
        labels, count = label((pd >= thresh_steps[i]) & (gt >= thresh_steps[i]))
        if count == 0:
            continue
        omega = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
        l_map[(l_map == -1) & ~omega] = thresh_steps[i - 1]
    l_map[l_map == -1] = 1
    d_pd, d_gt = pd - l_map, gt - l_map
    phi_pd = 1 - d_pd * (d_pd >= 0.15).astype(np.float32)
    phi_gt = 1 - d_gt * (d_gt >= 0.15).astype(np.float32)
    return float(np.sum(np.abs(phi_pd - phi_gt)) / 1000)
