"""File lists for training (Adobe fg / alpha over COCO bg, or photos with alphas and their
estimated foregrounds) and testing (Composition-1K layout).

Files pair by name stem with any image extension; lists are sorted so every rank sees the
same order.
"""
import logging
import os
from dataclasses import dataclass
from typing import List, Optional

from utils.io.images import composition_base, index_by_stem, list_images, stem

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
    """Files paired by index: foreground, alpha and (for photos) the photo; and the backgrounds."""
    fg: List[str]
    alpha: List[str]
    bg: List[str]
    merged: Optional[List[str]] = None


@dataclass
class EvalList:
    merged: List[str]
    alpha: List[str]
    trimap: List[str]


def _paired_with_alphas(first: dict, alpha: dict, first_dir: str, alpha_dir: str, kind: str, keys) -> List[str]:
    """The stems that have both a `kind` file (foreground, photo) and an alpha, sorted; the
    files of either without the other are named in the log and left out."""
    lonely = sorted(set(first) - set(alpha))
    if lonely:
        logger.warning("%d %ss in %s have no alpha in %s and are left out: %s",
                       len(lonely), kind, first_dir, alpha_dir, ", ".join(first[s] for s in lonely))
    lonely = sorted(set(alpha) - set(first))
    if lonely:
        logger.warning("%d alphas in %s have no %s in %s and are left out: %s",
                       len(lonely), alpha_dir, kind, first_dir, ", ".join(alpha[s] for s in lonely))
    stems = sorted(set(first) & set(alpha))
    if not stems:
        raise DataListError(f"no {kind} in {keys[0]} = {first_dir!r} has an alpha of the same name in "
                            f"{keys[1]} = {alpha_dir!r}")
    return stems


def _indexed(folder: str, key: str) -> dict:
    return _unique(index_by_stem(_images_in(folder, key)), folder, key)


def training_list(fg_dir: str, alpha_dir: str, bg_dir: str,
                  keys=("data.train_fg", "data.train_alpha", "data.train_bg")) -> TrainList:
    """Foregrounds and alphas paired by stem (unpaired files listed once and left out), and all
    backgrounds, each sorted."""
    fg, alpha = _indexed(fg_dir, keys[0]), _indexed(alpha_dir, keys[1])
    stems = _paired_with_alphas(fg, alpha, fg_dir, alpha_dir, "foreground", keys[:2])
    bg = [os.path.join(bg_dir, name) for name in _images_in(bg_dir, keys[2])]
    return TrainList([os.path.join(fg_dir, fg[s]) for s in stems],
                     [os.path.join(alpha_dir, alpha[s]) for s in stems], bg)


def _prepare_command(merged_dir: str, alpha_dir: str, fg_dir: str) -> str:
    return (f"python -m dataloader.prepare_foreground --image-dir {merged_dir} --alpha-dir {alpha_dir} "
            f"--output {fg_dir or 'FOLDER'}")


def photos_with_alphas(merged_dir: str, alpha_dir: str, keys=("data.train_merged", "data.train_alpha")):
    """(photo stem -> file name, alpha stem -> file name, the stems of both, sorted): photos and
    alphas paired by stem, unpaired files listed once in the log and left out."""
    merged, alpha = _indexed(merged_dir, keys[0]), _indexed(alpha_dir, keys[1])
    return merged, alpha, _paired_with_alphas(merged, alpha, merged_dir, alpha_dir, "photo", keys[:2])


def photo_training_list(merged_dir: str, alpha_dir: str, fg_dir: Optional[str], bg_dir: str,
                        keys=("data.train_merged", "data.train_alpha", "data.train_fg",
                              "data.train_bg")) -> TrainList:
    """Photos and alphas paired by stem (unpaired files listed once and left out), each with its
    estimated foreground `<fg_dir>/<stem>.*`, and all backgrounds. A missing foreground folder,
    or foregrounds missing for some photos, is an error naming the command that makes them."""
    merged, alpha, stems = photos_with_alphas(merged_dir, alpha_dir, keys[:2])
    command = _prepare_command(merged_dir, alpha_dir, fg_dir)
    if not fg_dir or not os.path.isdir(fg_dir):
        where = f"{keys[2]} = {fg_dir!r} is no folder" if fg_dir else f"{keys[2]} is not set"
        raise DataListError(f"{keys[0]} needs the photos' foreground colours, estimated once; {where}. Make "
                            f"them with: {command} (then set {keys[2]} to that folder)")
    fg = index_by_stem(list_images(fg_dir))
    missing = [merged[s] for s in stems if s not in fg]
    if missing:
        raise DataListError(f"{len(missing)} of {len(stems)} photos in {keys[0]} = {merged_dir!r} have no foreground "
                            f"in {keys[2]} = {fg_dir!r} (e.g. {', '.join(missing[:3])}); make them with: {command} "
                            "(it keeps the foregrounds already made)")
    fg = _unique(fg, fg_dir, keys[2])
    bg = [os.path.join(bg_dir, name) for name in _images_in(bg_dir, keys[3])]
    return TrainList([os.path.join(fg_dir, fg[s]) for s in stems], [os.path.join(alpha_dir, alpha[s]) for s in stems],
                     bg, [os.path.join(merged_dir, merged[s]) for s in stems])


@dataclass(frozen=True)
class TrainFolders:
    """The config's training folders (data.train_fg, train_alpha, train_bg, train_merged), None
    where unset."""
    fg: Optional[str]
    alpha: Optional[str]
    bg: Optional[str]
    merged: Optional[str]


def composited_list(folders: TrainFolders) -> TrainList:
    """Photos with alphas (folders.merged) and their estimated foregrounds, or Adobe-style
    foregrounds with alphas; and the backgrounds."""
    if folders.merged:
        return photo_training_list(folders.merged, folders.alpha, folders.fg, folders.bg)
    return training_list(folders.fg, folders.alpha, folders.bg)


def eval_list(merged_dir: str, alpha_dir: str, trimap_dir: str,
              keys=("data.test_merged", "data.test_alpha", "data.test_trimap")) -> EvalList:
    """Every merged image with its trimap and alpha: of the same stem, or `<stem>` for a
    Composition-1K-style `<stem>_<k>` image (one trimap per foreground, as utils.trimaps.from_alpha
    makes them from the alphas, serves all its composites)."""
    merged = _images_in(merged_dir, keys[0])
    alphas, trimaps = _indexed(alpha_dir, keys[1]), _indexed(trimap_dir, keys[2])
    result = EvalList([], [], [])
    problems = []
    for name in merged:
        s = stem(name)
        alpha = alphas.get(s) or alphas.get(composition_base(s))
        trimap = trimaps.get(s) or trimaps.get(composition_base(s))
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
