"""File lists for training (Adobe fg / alpha over COCO bg) and testing (Composition-1K layout).

Files pair by name stem with any image extension; lists are sorted so every rank sees the
same order.
"""
import logging
import os
from dataclasses import dataclass
from typing import List

from utils.image_io import composition_base, index_by_stem, list_images, stem

logger = logging.getLogger(__name__)


class DataListError(ValueError):
    pass


def _images_in(folder: str, key: str) -> List[str]:
    if not folder:
        raise DataListError(f"{key} is not set in the config")
    if not os.path.isdir(folder):
        raise DataListError(f"{key} = {folder!r}: no such folder")
    names = list_images(folder)
    if not names:
        raise DataListError(f"{key} = {folder!r}: the folder holds no images")
    return names


def _unique(index: dict, folder: str, key: str) -> dict:
    clashes = {s: names for s, names in index.items() if len(names) > 1}
    if clashes:
        s, names = next(iter(clashes.items()))
        raise DataListError(f"{key} = {folder!r}: {len(clashes)} stems have several files, "
                            f"e.g. {', '.join(names)}; keep one file per name")
    return {s: names[0] for s, names in index.items()}


@dataclass
class TrainList:
    fg: List[str]
    alpha: List[str]
    bg: List[str]


@dataclass
class EvalList:
    merged: List[str]
    alpha: List[str]
    trimap: List[str]


def training_list(fg_dir: str, alpha_dir: str, bg_dir: str,
                  keys=("data.train_fg", "data.train_alpha", "data.train_bg")) -> TrainList:
    """Foregrounds and alphas paired by stem (unpaired files listed once and left out), and all
    backgrounds, each sorted."""
    fg = _unique(index_by_stem(_images_in(fg_dir, keys[0])), fg_dir, keys[0])
    alpha = _unique(index_by_stem(_images_in(alpha_dir, keys[1])), alpha_dir, keys[1])
    lonely_fg = sorted(set(fg) - set(alpha))
    lonely_alpha = sorted(set(alpha) - set(fg))
    if lonely_fg:
        logger.warning("%d foregrounds in %s have no alpha in %s and are left out: %s",
                       len(lonely_fg), fg_dir, alpha_dir, ", ".join(fg[s] for s in lonely_fg))
    if lonely_alpha:
        logger.warning("%d alphas in %s have no foreground in %s and are left out: %s",
                       len(lonely_alpha), alpha_dir, fg_dir, ", ".join(alpha[s] for s in lonely_alpha))
    stems = sorted(set(fg) & set(alpha))
    if not stems:
        raise DataListError(f"no foreground in {keys[0]} = {fg_dir!r} has an alpha of the same name in "
                            f"{keys[1]} = {alpha_dir!r}")
    bg = [os.path.join(bg_dir, name) for name in _images_in(bg_dir, keys[2])]
    return TrainList([os.path.join(fg_dir, fg[s]) for s in stems],
                     [os.path.join(alpha_dir, alpha[s]) for s in stems], bg)


def eval_list(merged_dir: str, alpha_dir: str, trimap_dir: str,
              keys=("data.test_merged", "data.test_alpha", "data.test_trimap")) -> EvalList:
    """Every merged image with its trimap (same stem) and alpha (same stem, or `<stem>` for a
    Composition-1K `<stem>_<k>` image)."""
    merged = _images_in(merged_dir, keys[0])
    alphas = _unique(index_by_stem(_images_in(alpha_dir, keys[1])), alpha_dir, keys[1])
    trimaps = _unique(index_by_stem(_images_in(trimap_dir, keys[2])), trimap_dir, keys[2])
    result = EvalList([], [], [])
    problems = []
    for name in merged:
        s = stem(name)
        alpha = alphas.get(s) or alphas.get(composition_base(s))
        trimap = trimaps.get(s)
        if alpha is None or trimap is None:
            problems.append(f"{os.path.join(merged_dir, name)}: no " + " and no ".join(
                what for what, found in (("alpha", alpha), ("trimap", trimap)) if found is None))
            continue
        result.merged.append(os.path.join(merged_dir, name))
        result.alpha.append(os.path.join(alpha_dir, alpha))
        result.trimap.append(os.path.join(trimap_dir, trimap))
    if problems:
        raise DataListError(f"{len(problems)} test images lack a counterpart: " + "; ".join(problems[:5]))
    return result
