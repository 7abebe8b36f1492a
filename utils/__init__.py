"""Family-free plumbing, imported by the entry points, networks/ and dataloader/ and importing none of
them: the run's plumbing (atomic writes, processes, signals, memory, progress, optional packages) at the
top, and one sub-package per concept: io (images and folders), inference (a network inside its recipe),
trimaps, cutouts and evaluation."""
