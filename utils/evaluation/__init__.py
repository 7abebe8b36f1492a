"""Alpha mattes against ground truth: the metrics of Deep Image Matting's MATLAB code (metrics) and of
AIM-500's Python code (metrics_aim500), per-category means, the failure gallery, a folder's evaluation
(evaluate), its speed (benchmark) and the quickstart's report."""
