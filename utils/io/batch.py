"""What the folder-processing entry points (demo.py, utils.cutouts.cutout) share: pairing files by stem,
refusing outputs that would overwrite each other, running the items, writing an item's results
all or none, resuming a run that was stopped, the closing summary, and the one line a stop
signal prints. A bad item is named and skipped; the rest of the folder goes on."""
import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.atomic import WriteError, remove_temporary_files
from utils.io.images import IMAGE_EXTENSIONS, ImageReadError, index_by_stem, list_images, stem, write_image
from utils.memory import OutOfMemory
from utils.progress import progress

# What demo.py and utils.cutouts.cutout write beside an image's alpha <stem>.png, as <stem><suffix>.png:
# the GCA offset pictures, the trimap made from a mask, the foreground colours and the RGBA
# cutout, the composite. utils.evaluation.evaluate knows them from here as not being predictions.
OFFSET_SUFFIXES = ("_offset1", "_offset2")
TRIMAP_SUFFIX = "_trimap"
CUTOUT_SUFFIXES = ("_fg", "_rgba")
COMPOSITE_SUFFIX = "_composite"
EXTRA_OUTPUT_SUFFIXES = OFFSET_SUFFIXES + (TRIMAP_SUFFIX,) + CUTOUT_SUFFIXES + (COMPOSITE_SUFFIX,)


def is_inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def folders_problem(inputs: Sequence[Tuple[str, str]], output: str, outputs: str) -> str:
    """The error line for a folder command's arguments ('' when they will do): an input (flag,
    folder) that is not a folder, an --output inside one of them (`outputs` names what would mix
    with the inputs), or a first input that holds no images."""
    for flag, folder in inputs:
        if not os.path.isdir(folder):
            return f"error: {flag} {folder} is not a folder"
        if is_inside(output, folder):
            return (f"error: --output {output} lies inside the input folder {folder}; "
                    f"choose an --output outside it so {outputs} do not mix with the inputs")
    if not list_images(inputs[0][1]):
        return f"error: no images ({', '.join(IMAGE_EXTENSIONS)}) in {inputs[0][1]}"
    return ""


def output_folder_problem(output: str) -> str:
    """'' once the folder `output` exists (made here when missing), else the error line."""
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        return f"error: --output {output} cannot be created ({e.strerror or e}); choose another --output folder"
    return ""


def pair_by_stem(image_dir: str, other_dir: str, what: str) -> Tuple[List[Tuple[str, str]], List[str]]:
    """((image path, path of its `what`) pairs by file stem, problems) for every image in image_dir;
    `what` names the files of other_dir in messages (trimap, mask, alpha)."""
    others = index_by_stem(list_images(other_dir))
    pairs, problems = [], []
    for name in list_images(image_dir):
        image_path = os.path.join(image_dir, name)
        candidates = others.get(stem(name), [])
        if not candidates:
            problems.append(f"{image_path}: no {what} named {stem(name)}.* in {other_dir}")
        elif len(candidates) > 1:
            problems.append(f"{image_path}: several {what}s match ({', '.join(candidates)}) in {other_dir}; keep one")
        else:
            pairs.append((image_path, os.path.join(other_dir, candidates[0])))
    return pairs, problems


def check_same_size(image: np.ndarray, other: np.ndarray, image_path: str, other_path: str, what: str) -> None:
    """ImageReadError naming both files when `other` (a trimap, mask or alpha) is not the image's size."""
    if image.shape[:2] != other.shape[:2]:
        raise ImageReadError(f"{other_path}: {what} is {other.shape[1]}x{other.shape[0]} but {image_path} is "
                             f"{image.shape[1]}x{image.shape[0]}; they must be the same size")


def drop_clashing(pairs: List[Tuple[str, str]],
                  output_names: Callable[[str], List[str]]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(the pairs whose output names, `output_names(image path)`, no other image writes, a
    problem per group of images that would write the same file): one would silently overwrite
    the other's result."""
    writers: Dict[str, List[str]] = {}
    for image_path, _ in pairs:
        for name in output_names(image_path):
            writers.setdefault(name, []).append(image_path)
    clashes: Dict[Tuple[str, ...], str] = {}
    for name, paths in writers.items():
        if len(paths) > 1:
            clashes.setdefault(tuple(paths), name)
    problems = [f"{', '.join(paths[:-1])} and {paths[-1]} would {'both' if len(paths) == 2 else 'all'} "
                f"write {name}; rename one" for paths, name in clashes.items()]
    clashing = {path for paths in clashes for path in paths}
    return [pair for pair in pairs if pair[0] not in clashing], problems


def write_all(paths: Sequence[str], pictures: Sequence[np.ndarray]) -> None:
    """Writes pictures[i] to paths[i], in that order; when one fails or anything else stops them
    (a stop signal's Interrupted), those already written are removed before the error goes on:
    a partial set, or one mixed with an earlier run's files, would pass for a finished result."""
    written = []
    try:
        for path, picture in zip(paths, pictures):
            write_image(path, picture)
            written.append(path)
    except BaseException:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        raise


def name_list(names: List[str], shown: int = 10) -> str:
    """'a, b, c' or 'a, b, ... and 12 more'."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@dataclass
class Tally:
    """How far a folder command got, for the line a stop signal prints: its items once listed
    (None before), those finished with their outputs whole (complete ones a resumed run skipped
    included), and the folder they are in."""
    total: Optional[int] = None
    done: int = 0
    folder: str = ""
    # Where several processes share the run (utils.io.shards): (done, the items not done) as the
    # folder holds them, asked when the line is printed; the others' progress is known only there.
    look_up: Optional[Callable[[], Tuple[int, List[str]]]] = None

    def stopped_line(self, finished: str, again: str) -> str:
        """'12 of 27 <finished> <folder>; <again>' (finished: 'images written to'), with the
        items not done named where `look_up` counts them, or that nothing was done before the
        items were listed."""
        if self.total is None:
            return f"before any item was processed; {again}"
        done, left = self.look_up() if self.look_up else (self.done, [])
        named = f"; not done: {name_list(left)}" if left else ""
        return f"{done} of {self.total} {finished} {self.folder}{named}; {again}"


RESUME = "add --resume to the same command to finish"
AGAIN = "run the same command again to finish"


def split_complete(pairs: Sequence[Tuple[str, str]], folder: str,
                   required: Callable[[str], List[str]]) -> Tuple[List[Tuple[str, str]], int]:
    """For --resume: (the pairs still to do, how many are complete), an image being complete when
    every file `required(image path)` names is in `folder`. Each file was written atomically, so
    one that is there is whole; the temporary files that writes cut short (by SIGKILL, a crash)
    left are removed and named."""
    for path in remove_temporary_files(folder):
        print(f"removed {path}, left by a write that was cut short", file=sys.stderr)
    todo = [pair for pair in pairs if not all_there(folder, required(pair[0]))]
    return todo, len(pairs) - len(todo)


def all_there(folder: str, names: Sequence[str]) -> bool:
    """Whether every file `names` names is in `folder` (each written atomically: then whole)."""
    return all(os.path.isfile(os.path.join(folder, name)) for name in names)


def process_pairs(pairs: Sequence[Tuple[str, str]], process: Callable[[str, str], None], desc: str,
                  problems: List[str], unnamed_errors: Tuple[type, ...] = (), tally: Optional[Tally] = None,
                  bar: bool = True) -> int:
    """Calls process(image path, other path) on each pair under a progress bar (none without
    `bar`); returns how many succeeded, counting them in `tally` too as they do. A pair that
    raises ImageReadError, WriteError or OutOfMemory (their messages name the file), or one of
    `unnamed_errors` (named here by the image), is reported, added to `problems` and skipped."""
    done = 0
    for image_path, other_path in progress(pairs, desc=desc) if bar else pairs:
        try:
            process(image_path, other_path)
        except (ImageReadError, WriteError, OutOfMemory) as e:
            problem = str(e)
        except unnamed_errors as e:
            problem = f"{image_path}: {e}"
        else:
            done += 1
            if tally is not None:
                tally.done += 1
            continue
        problems.append(problem)
        print(f"skipped: {problem}", file=sys.stderr)
    return done


def report_failures(failed: int, total: int, problems: List[str]) -> int:
    """Lists the problems again after the run (the progress output may have buried them); the
    exit code: 1 when there were any, else 0."""
    if problems:
        print(f"{failed} of {total} images failed:" + "".join(f"\n  {problem}" for problem in problems),
              file=sys.stderr)
    return 1 if problems else 0
