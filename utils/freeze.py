"""Freezing named parts of a model for training (`train.freeze`).

Names are dotted paths of `model.named_modules()` ("encoder", "decoder", "encoder.layer1"), so
any model's parts can be named without the trainer knowing its architecture. A frozen part
gets no gradient (requires_grad False, so neither the optimizer nor DistributedDataParallel
sees its parameters) and the trainer keeps it in eval mode at every step, so its BatchNorm
statistics and spectral-norm vectors do not move either.
"""
import difflib
from typing import List, Sequence

import torch.nn as nn


class FreezeError(ValueError):
    pass


def named_parts(model: nn.Module, names: Sequence[str], key: str = "train.freeze") -> List[nn.Module]:
    """The modules of `model` at the dotted paths `names`; FreezeError naming `key`, the unknown
    name and the closest module names for a name that matches no module."""
    modules = dict(model.named_modules())
    parts = []
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
            hint = (f"closest: {', '.join(repr(n) for n in close)}" if close else
                    f"the top-level parts are: {', '.join(repr(n) for n, _ in model.named_children())}")
            raise FreezeError(f"{key}: the model has no module named {name!r}; {hint} (names are dotted "
                              "paths of the model's modules, e.g. \"encoder\" or \"encoder.layer1\")")
        parts.append(modules[name])
    return parts


def freeze(model: nn.Module, names: Sequence[str], key: str = "train.freeze") -> List[nn.Module]:
    """Switches off the gradients of the named parts' parameters and returns the parts, for
    the trainer to keep in eval mode. FreezeError for an unknown name, or
    when nothing would be left to train."""
    parts = named_parts(model, names, key)
    for part in parts:
        part.requires_grad_(False)
    if names and not any(p.requires_grad for p in model.parameters()):
        raise FreezeError(f"{key} = {list(names)!r} freezes every parameter of the model: nothing would be "
                          "trained; freeze fewer parts")
    return parts

