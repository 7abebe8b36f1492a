"""A failure gallery: one picture per worst image (image | trimap | ground truth | prediction |
|error|, name and figures written on it) and an index.html with every image's figures in a table
that sorts by a click on a column's header (plain HTML and a few lines of JavaScript).

A gallery folder is one that is absent, empty, or holds an index.html this module wrote; any
other folder is refused so that nothing the user made is overwritten.
"""
import html
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote, unquote

import cv2
import numpy as np

from utils.atomic import atomic_file
from utils.cutouts.foreground import to_uint8
from utils.io.images import ImageReadError, read_first_channel, read_image, stem, write_image
from utils.progress import progress

GENERATOR = "GCA-Matting utils.evaluation.evaluate gallery"
PANEL_SIDE = 320  # longest side of each panel, in pixels
PICTURE_LINK = re.compile(r"<a href='(worst\d+_[^'/]*\.png)'>")
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Entry:
    name: str
    metrics: Dict[str, float]
    pred: str
    alpha: str
    trimap: str
    image: Optional[str] = None
    labels: Optional[Dict[str, str]] = None


def folder_problem(folder: str) -> str:
    """'' when `folder` may hold a gallery, else why not."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        return "is a file; give a folder"
    if not os.path.isdir(folder) or not os.listdir(folder):
        return ""
    index = os.path.join(folder, "index.html")
    try:
        with open(index, encoding="utf-8", errors="replace") as f:
            ours = GENERATOR in f.read(4096)
    except OSError:
        ours = False
    return "" if ours else ("holds files and no gallery index.html written by utils.evaluation.evaluate; "
                            "give an empty or new folder so that nothing in it is overwritten")


def to_display(image: np.ndarray) -> np.ndarray:
    """uint8 BGR of a grey or colour picture on the 0..255 scale."""
    image = to_uint8(image)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def error_heatmap(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """|pred - target| as a BGR heat map (inferno: black 0, yellow 255 = an error of 1)."""
    error = np.abs(pred.astype(np.float32) - target.astype(np.float32))
    return cv2.applyColorMap(to_uint8(error), cv2.COLORMAP_INFERNO)


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    scale = side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _wrap(words: Sequence[str], width: int, scale: float) -> List[str]:
    lines: List[str] = []
    for word in words:
        candidate = f"{lines[-1]}  {word}" if lines else word
        if lines and cv2.getTextSize(candidate, FONT, scale, 1)[0][0] <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _text_band(lines: List[str], width: int, scale: float = 0.5) -> np.ndarray:
    height = 8 + 20 * len(lines)
    band = np.full((height, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (6, 20 + 20 * i), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return band


def gallery_picture(title: str, figures: Sequence[str], panels: Sequence[Tuple[str, np.ndarray]]) -> np.ndarray:
    """The panels side by side, each labelled below, under a band with the title and figures."""
    fitted = [(label, _fit(to_display(image), PANEL_SIDE)) for label, image in panels]
    height = max(image.shape[0] for _, image in fitted)
    columns = []
    for label, image in fitted:
        padded = np.full((height, image.shape[1], 3), 255, np.uint8)
        padded[:image.shape[0]] = image
        columns.append(np.vstack([padded, _text_band([label], image.shape[1], 0.45)]))
    row = np.hstack([np.hstack([c, np.full((c.shape[0], 4, 3), 255, np.uint8)]) for c in columns])
    header = _text_band([title] + _wrap(figures, row.shape[1] - 12, 0.5), row.shape[1])
    return np.vstack([header, row])


def entry_picture(entry: Entry, figures: Sequence[str]) -> Tuple[np.ndarray, str]:
    """(picture, '' or a note) for one entry; a missing or unreadable photo leaves its panel out."""
    pred, alpha, trimap = (read_first_channel(p) for p in (entry.pred, entry.alpha, entry.trimap))
    panels, note = [], ""
    if entry.image:
        try:
            image = read_image(entry.image)
            if image.shape[:2] != alpha.shape:
                note = (f"{entry.image}: {image.shape[1]}x{image.shape[0]}, not the matte's "
                        f"{alpha.shape[1]}x{alpha.shape[0]}; shown resized: is it this image's photo?")
                image = cv2.resize(to_display(image), (alpha.shape[1], alpha.shape[0]), interpolation=cv2.INTER_AREA)
            panels.append(("image", image))
        except ImageReadError as e:  # a photo only illustrates; the figures stand without it
            note = f"{entry.image}: left out of the picture ({e})"
    panels += [("trimap", trimap), ("ground truth", alpha), ("prediction", pred),
               ("|error| (yellow = 1)", error_heatmap(pred, alpha))]
    labels = " ".join(f"[{v}]" for v in (entry.labels or {}).values())
    return gallery_picture(f"{entry.name} {labels}".strip(), figures, panels), note


_SCRIPT = """
document.querySelectorAll("#figures th").forEach((header, column) => {
  header.addEventListener("click", () => {
    const body = document.querySelector("#figures tbody");
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const numeric = header.dataset.type === "number";
    const key = row => row.cells[column].dataset.value;
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" || y === "") return (x === "") - (y === "");  // no figure: always last
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y, undefined, {numeric: true});
      return ascending ? order : -order;
    });
    document.querySelectorAll("#figures th").forEach(h => h.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.forEach(row => body.appendChild(row));
  });
});
"""

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { cursor: pointer; background: #eee; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td:first-child, th:first-child { text-align: left; }
"""


def index_html(title: str, notes: Sequence[str], columns: Sequence[Tuple[str, str, int]],
               rows: Sequence[Tuple[str, Optional[str], Dict[str, str], Dict[str, float]]],
               label_fields: Sequence[str]) -> str:
    """The page: `columns` [(key, header, decimals)], `rows` [(name, picture or None, labels,
    figures)] listed in the given order, which is taken to be SAD descending."""
    head = ["<th data-type='text'>name</th>"] + [f"<th data-type='text'>{html.escape(f)}</th>" for f in label_fields]
    head += [f"<th data-type='number'{' aria-sort=descending' if key == 'sad' else ''}>{html.escape(header)}</th>"
             for key, header, _ in columns]
    body = []
    for name, picture, labels, figures in rows:
        shown = f"<a href='{quote(picture)}'>{html.escape(name)}</a>" if picture else html.escape(name)
        cells = [f"<td data-value='{html.escape(name, quote=True)}'>{shown}</td>"]
        cells += [f"<td data-value='{html.escape(labels.get(f, ''), quote=True)}'>{html.escape(labels.get(f, ''))}</td>"
                  for f in label_fields]
        for key, _, decimals in columns:
            value = figures.get(key, float("nan"))
            known = value == value
            cells.append(f"<td data-value='{repr(value) if known else ''}'>{f'{value:.{decimals}f}' if known else '-'}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    paragraphs = "".join(f"<p>{html.escape(note)}</p>" for note in notes)
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta name='generator' content='{GENERATOR}'>\n<title>{html.escape(title)}</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n{paragraphs}\n"
            f"<table id='figures'>\n<thead><tr>{''.join(head)}</tr></thead>\n<tbody>\n" + "\n".join(body) +
            f"\n</tbody>\n</table>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def picture_name(rank: int, name: str) -> str:
    return f"worst{rank:03d}_{stem(name)}.png"


def remove_old_pictures(folder: str) -> None:
    """The pictures an earlier gallery's index.html in this folder links to, and nothing else."""
    try:
        with open(os.path.join(folder, "index.html"), encoding="utf-8", errors="replace") as f:
            names = PICTURE_LINK.findall(f.read())
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(folder, unquote(name))
        if os.path.isfile(path):
            os.remove(path)


def write_gallery(folder: str, entries: Sequence[Entry], worst: int, title: str, notes: Sequence[str],
                  columns: Sequence[Tuple[str, str, int]], figure_text: Callable[[Dict[str, float]], List[str]]
                  ) -> List[str]:
    """Writes the pictures of the `worst` entries by SAD and index.html into `folder` (made if
    absent); returns notes on left-out photos. `figure_text(metrics)` gives the words written on a
    picture. Raises OSError (utils.atomic.WriteError) when a file cannot be written."""
    os.makedirs(folder, exist_ok=True)
    remove_old_pictures(folder)
    ranked = sorted(entries, key=lambda e: -e.metrics["sad"])
    pictures, problems = {}, []
    chosen = ranked[:worst]
    for rank, entry in enumerate(progress(chosen, len(chosen), "gallery"), 1):
        picture, note = entry_picture(entry, figure_text(entry.metrics))
        if note:
            problems.append(note)
        pictures[entry.name] = picture_name(rank, entry.name)
        write_image(os.path.join(folder, pictures[entry.name]), picture)
    label_fields = list(dict.fromkeys(f for e in entries for f in (e.labels or {})))
    rows = [(e.name, pictures.get(e.name), e.labels or {}, e.metrics) for e in ranked]
    with atomic_file(os.path.join(folder, "index.html"), "w", encoding="utf-8") as f:
        f.write(index_html(title, notes, columns, rows, label_fields))
    return problems
