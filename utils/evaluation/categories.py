"""Image types and categories for per-group means: AIM-500's JSON file, a CSV `name,category`,
or the prefix of the file name (SIM names its images `<category>_<n>`).

A table maps an image stem to its labels, {"type": ..., "category": ...}, either label optional.
"""
import csv
import io
import json
import math
from typing import Dict, Iterable, List, Tuple

from utils.io.images import composition_base, stem

FIELDS = ("type", "category")
UNCATEGORISED = "uncategorised"
Labels = Dict[str, str]


class CategoriesError(ValueError):
    """A categories file that cannot be used; the message names the file (and line or key)."""


def _json_table(path: str, text: str) -> Dict[str, Labels]:
    def unique_keys(pairs):
        names = [name for name, _ in pairs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise CategoriesError(f"{path}: {', '.join(map(repr, twice))} given more than once; keep one entry each")
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as e:
        raise CategoriesError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno}); "
                              "fix the file or give a CSV of name,category") from None
    if not isinstance(data, dict):
        raise CategoriesError(f"{path}: the JSON must be an object mapping each image name to "
                              '{"type": ..., "category": ...}')
    table = {}
    for name, value in data.items():
        labels = {"category": value} if isinstance(value, str) else value
        if not (isinstance(labels, dict) and any(field in labels for field in FIELDS)
                and all(isinstance(labels[field], str) for field in FIELDS if field in labels)):
            raise CategoriesError(f"{path}: entry {name!r} is {json.dumps(value)}; expected a category name or "
                                  '{"type": "...", "category": "..."} with text values')
        table[stem(name)] = {field: labels[field] for field in FIELDS if field in labels}
    return table


def _csv_table(path: str, text: str) -> Dict[str, Labels]:
    table: Dict[str, Labels] = {}
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or (line == 1 and [c.lower() for c in cells] == ["name", "category"]):
            continue
        if len(cells) != 2 or not all(cells):
            raise CategoriesError(f"{path}:{line}: expected name,category, got {','.join(row)!r}")
        name, category = stem(cells[0]), cells[1]
        if table.get(name, {}).get("category", category) != category:
            raise CategoriesError(f"{path}:{line}: {cells[0]} already has category {table[name]['category']!r}")
        table[name] = {"category": category}
    return table


def load_categories(path: str) -> Dict[str, Labels]:
    """stem -> labels from a JSON object (AIM-500's form; a plain string value is a category) or,
    for any other file, a CSV of name,category with an optional header. Raises CategoriesError."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CategoriesError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    is_json = path.lower().endswith(".json") or text.lstrip().startswith("{")
    table = _json_table(path, text) if is_json else _csv_table(path, text)
    if not table:
        raise CategoriesError(f"{path}: names no image")
    return table


def categories_from_prefix(names: Iterable[str], separator: str) -> Dict[str, Labels]:
    """stem -> {"category": the stem up to its last `separator`}; a name without one is left out."""
    table = {}
    for name in names:
        prefix, found, _ = stem(name).rpartition(separator)
        if found and prefix:
            table[stem(name)] = {"category": prefix}
    return table


def assign_labels(names: Iterable[str], table: Dict[str, Labels]) -> Tuple[Dict[str, Labels], List[str], List[str]]:
    """(labels per name, the names the table lacks, the table's names matched by none): a
    prediction `<stem>_<k>` (Composition-1K naming) takes the labels of `<stem>`."""
    assigned, missing, used = {}, [], set()
    for name in names:
        key = next((k for k in (stem(name), composition_base(stem(name))) if k in table), None)
        if key is None:
            missing.append(name)
            continue
        assigned[name] = table[key]
        used.add(key)
    return assigned, missing, [key for key in table if key not in used]


def group_means(values: Dict[str, float], labels: Dict[str, Labels], field: str,
                order: Iterable[str] = ()) -> List[Tuple[str, float, int]]:
    """[(group, mean of the values, count)] per `field` label, in `order` and then first
    appearance; a name without that label is in UNCATEGORISED, last."""
    groups: Dict[str, List[float]] = {group: [] for group in order}
    for name, value in values.items():
        groups.setdefault(labels.get(name, {}).get(field, UNCATEGORISED), []).append(value)
    uncategorised = groups.pop(UNCATEGORISED, None)
    if uncategorised:
        groups[UNCATEGORISED] = uncategorised
    return [(group, math.fsum(v) / len(v), len(v)) for group, v in groups.items() if v]


def group_report(sads: Dict[str, float], labels: Dict[str, Labels], table: Dict[str, Labels]) -> List[str]:
    """'mean SAD per type:' and 'SO: SAD 12.345 (3 images)' lines, then the same per category,
    for the fields the table has."""
    lines = []
    for field in FIELDS:
        order = list(dict.fromkeys(labels_[field] for labels_ in table.values() if field in labels_))
        if not order:
            continue
        lines.append(f"mean SAD per {field}:")
        lines += [f"{group}: SAD {mean:.3f} ({count} image{'s' if count != 1 else ''})"
                  for group, mean, count in group_means(sads, labels, field, order)]
    return lines

