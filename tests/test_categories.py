"""Per-type and per-category means: the file forms, the prefix rule, bad files, and the report."""
import csv
import json
import os

import cv2
import numpy as np
import pytest

from utils.evaluation.categories import (CategoriesError, assign_labels, categories_from_prefix, group_means,
                                         group_report, load_categories)
from utils.evaluation.evaluate import main
from utils.evaluation.metrics_aim500 import aim500_metrics

# A hand-made set: per-image SAD and the AIM-500 labels
SADS = {"a.png": 1.0, "b.png": 2.0, "c.png": 4.0, "d.png": 8.0, "e.png": 16.0}
TABLE = {"a": {"type": "SO", "category": "animal"}, "b": {"type": "SO", "category": "human"},
         "c": {"type": "STM", "category": "animal"}, "d": {"type": "NS", "category": "plant"}}


def test_means_per_type_and_category_on_a_hand_made_set():
    labels, missing, unused = assign_labels(list(SADS), TABLE)
    assert missing == ["e.png"] and unused == []
    assert group_means(SADS, labels, "type", ["SO", "STM", "NS"]) == [
        ("SO", 1.5, 2), ("STM", 4.0, 1), ("NS", 8.0, 1), ("uncategorised", 16.0, 1)]
    assert group_means(SADS, labels, "category") == [
        ("animal", 2.5, 2), ("human", 2.0, 1), ("plant", 8.0, 1), ("uncategorised", 16.0, 1)]
    assert group_report(SADS, labels, TABLE) == [
        "mean SAD per type:", "SO: SAD 1.500 (2 images)", "STM: SAD 4.000 (1 image)", "NS: SAD 8.000 (1 image)",
        "uncategorised: SAD 16.000 (1 image)",
        "mean SAD per category:", "animal: SAD 2.500 (2 images)", "human: SAD 2.000 (1 image)",
        "plant: SAD 8.000 (1 image)", "uncategorised: SAD 16.000 (1 image)"]


def test_composition_style_names_take_their_base_names_labels():
    labels, missing, unused = assign_labels(["a_0.png", "a_1.png", "zz.png"], {"a": {"category": "x"}, "q": {}})
    assert labels == {"a_0.png": {"category": "x"}, "a_1.png": {"category": "x"}}
    assert missing == ["zz.png"] and unused == ["q"]


def test_json_csv_and_prefix_forms(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text(json.dumps({"a.jpg": {"type": "SO", "category": "animal", "extra": 1}, "b": "plant"}))
    assert load_categories(str(path)) == {"a": {"type": "SO", "category": "animal"}, "b": {"category": "plant"}}
    path = tmp_path / "cats.csv"
    path.write_text("name,category\na.png,fur\n\nb,glass_ice\n")
    assert load_categories(str(path)) == {"a": {"category": "fur"}, "b": {"category": "glass_ice"}}
    assert categories_from_prefix(["glass_ice_3.png", "fur_12.png", "plain.png", "_1.png"], "_") == {
        "glass_ice_3": {"category": "glass_ice"}, "fur_12": {"category": "fur"}}


@pytest.mark.parametrize("name, text, needle", [
    ("bad.json", '{\n  "a": {"type": "SO"},\n  "b": \n}', "bad.json:4: not valid JSON"),
    ("list.json", '["a", "b"]', "list.json: the JSON must be an object"),
    ("entry.json", '{"a": {"kind": "SO"}}', "entry 'a' is {\"kind\": \"SO\"}"),
    ("number.json", '{"a": {"type": 3}}', "entry 'a'"),
    ("bad.csv", "name,category\na,fur\nb\n", "bad.csv:3: expected name,category"),
    ("twice.csv", "a,fur\na,hair\n", "twice.csv:2: a already has category 'fur'"),
    ("empty.csv", "name,category\n", "empty.csv: names no image"),
    ("twice.json", '{"a": "fur", "b": "x", "a": "hair"}', "twice.json: 'a' given more than once"),
])
def test_bad_files_name_the_file_and_line(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CategoriesError) as error:
        load_categories(str(path))
    assert needle in str(error.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CategoriesError, match="nope.json: cannot be read"):
        load_categories(str(tmp_path / "nope.json"))


@pytest.fixture
def evaluation_set(tmp_path, rng):
    """Five predictions with ground truth and trimaps; their SADs (AIM-500) by name."""
    dirs = [tmp_path / d for d in ("pred", "alpha", "trimap")]
    for d in dirs:
        d.mkdir()
    sads = {}
    for name in SADS:
        alpha = cv2.GaussianBlur(rng.integers(0, 256, (20, 24)).astype(np.uint8), (5, 5), 2)
        pred = np.clip(alpha.astype(int) + rng.integers(-30, 31, alpha.shape), 0, 255).astype(np.uint8)
        trimap = np.full(alpha.shape, 128, np.uint8)
        trimap[:3], trimap[-3:] = 0, 255
        for folder, image in zip(dirs, (pred, alpha, trimap)):
            cv2.imwrite(str(folder / name), image)
        sads[name] = aim500_metrics(pred, alpha, trimap)["sad"]
    return [str(d) for d in dirs], sads


def test_cli_reports_per_type_and_category_and_names_mismatches(evaluation_set, tmp_path, capsys):
    (pred_dir, alpha_dir, trimap_dir), sads = evaluation_set
    table = dict(TABLE, ghost={"type": "NS", "category": "plant"})
    path = tmp_path / "cats.json"
    path.write_text(json.dumps(table))
    csv_path = tmp_path / "out.csv"
    code = main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir, "--protocol", "aim500",
                 "--categories", str(path), "--csv", str(csv_path), "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 0
    so = (sads["a.png"] + sads["b.png"]) / 2
    assert f"SO: SAD {so:.3f} (2 images)" in captured.out
    assert f"STM: SAD {sads['c.png']:.3f} (1 image)" in captured.out
    assert f"animal: SAD {(sads['a.png'] + sads['c.png']) / 2:.3f} (2 images)" in captured.out
    assert f"uncategorised: SAD {sads['e.png']:.3f} (1 image)" in captured.out
    assert "1 image(s) not in it, counted as uncategorised: e.png" in captured.err
    assert "1 name(s) with no evaluated prediction in " in captured.err and ": ghost" in captured.err
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["name", "type", "category"] and rows[1][:3] == ["a.png", "SO", "animal"]
    assert rows[5][:3] == ["e.png", "", ""]


def test_cli_category_from_prefix(tmp_path, rng, capsys):
    dirs = [tmp_path / d for d in ("pred", "alpha", "trimap")]
    for d in dirs:
        d.mkdir()
    sads = {}
    for name in ("glass_ice_1.png", "glass_ice_2.png", "fur_1.png", "odd.png"):
        alpha = rng.integers(0, 256, (12, 10)).astype(np.uint8)
        pred = rng.integers(0, 256, (12, 10)).astype(np.uint8)
        trimap = np.full(alpha.shape, 128, np.uint8)
        for folder, image in zip(dirs, (pred, alpha, trimap)):
            cv2.imwrite(str(folder / name), image)
        sads[name] = aim500_metrics(pred, alpha, trimap)["sad"]
    code = main(["--pred-dir", str(dirs[0]), "--alpha-dir", str(dirs[1]), "--trimap-dir", str(dirs[2]),
                 "--category-from-prefix", "_", "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 0 and "protocol comp1k:" in captured.out
    assert "mean SAD per type" not in captured.out
    assert f"fur: SAD {sads['fur_1.png']:.3f} (1 image)" in captured.out
    assert "1 image(s) with no category before the separator, counted as uncategorised: odd.png" in captured.err


@pytest.mark.parametrize("text, needle", [("{\n\n  \"a\": }", "cats.json:3: not valid JSON"),
                                          ('{"a": 3}', "entry 'a' is 3")])
def test_cli_bad_categories_file_is_exit_2_before_any_metric(evaluation_set, tmp_path, capsys, text, needle):
    (pred_dir, alpha_dir, trimap_dir), _ = evaluation_set
    path = tmp_path / "cats.json"
    path.write_text(text)
    code = main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir,
                 "--categories", str(path), "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 2 and needle in captured.err and "a.png" not in captured.out
    assert os.path.basename(str(path)) in captured.err
