"""python compare.py: two families (GCA-Matting with one block per layer, and the
plug-in family of tests/test_plugin_family) on a generated Composition-1K-style benchmark; the
table's figures equal utils.evaluation.evaluate's on each model's alphas alone, and its Markdown,
CSV and JSON agree."""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import compare
import one_block_gca
import test_plugin_family
from dataloader.toy import make_toy_dataset
from networks.families import build_network, load_config, model_spec
from utils.evaluation import evaluate
from utils.evaluation.categories import group_means
from utils.io.images import read_first_channel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GCA_CONFIG = os.path.join(ROOT, "config", "gca-dist.toml")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(benchmark folder, [--model values]): a toy Composition-1K test set of 2 foregrounds x 2
    composites, a one-block GCA-Matting checkpoint and a two-conv plug-in checkpoint."""
    root = tmp_path_factory.mktemp("compare")
    toy = str(root / "toy")
    make_toy_dataset(toy, num_fg=0, num_bg=0, num_test=2, fg_size=(40, 56), seed=5)
    with pytest.MonkeyPatch.context() as patch:
        one_block_gca.install(patch.setitem)
        torch.manual_seed(0)
        gca = build_network(model_spec(load_config(GCA_CONFIG)))
        with torch.no_grad():  # converge the spectral norms and move the BatchNorm statistics, as training does
            for _ in range(2):
                gca(torch.randn(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
        torch.save({"state_dict": gca.state_dict()}, root / "gca.pth")
    tiny_config = test_plugin_family.write_config(str(root), toy, "tiny", 1)
    torch.manual_seed(1)
    torch.save({"state_dict": test_plugin_family.TwoConv(4).state_dict()}, root / "tiny.pth")
    return os.path.join(toy, "test"), [[GCA_CONFIG, str(root / "gca.pth")], [tiny_config, str(root / "tiny.pth")]]


def model_flags(models):
    return [flag for values in models for flag in ["--model", *values]]


@pytest.fixture(scope="module")
def compared(setup, tmp_path_factory):
    benchmark, models = setup
    output = str(tmp_path_factory.mktemp("table"))
    with pytest.MonkeyPatch.context() as patch:
        one_block_gca.install(patch.setitem)
        code = compare.main(model_flags(models) + ["--benchmark", benchmark, "--output", output, "--device", "cpu",
                                                   "--category-from-prefix", "_", "--worst", "2"])
    assert code == 0
    with open(os.path.join(output, "table.json")) as f:
        return output, json.load(f)


def evaluate_alone(pred_dir: str, benchmark: str, csv_path: str):
    """utils.evaluation.evaluate on one model's alphas: [(name, metrics)] from its CSV."""
    assert evaluate.main(["--pred-dir", pred_dir, "--alpha-dir", os.path.join(benchmark, "alpha"), "--trimap-dir",
                          os.path.join(benchmark, "trimaps"), "--csv", csv_path, "--workers", "1",
                          "--category-from-prefix", "_"]) == 0
    with open(csv_path) as f:
        return [(row["name"], {key: float(row[key]) for key in evaluate.COLUMNS}) for row in csv.DictReader(f)]


def test_the_table_equals_utils_evaluate_for_each_model_alone(setup, compared, tmp_path):
    benchmark, _ = setup
    output, data = compared
    assert [model["family"] for model in data["models"]] == ["gca-matting", test_plugin_family.NAME]
    assert data["layout"] == "Composition-1K" and data["protocol"] == "comp1k"
    for model in data["models"]:
        pred_dir = os.path.join(output, "alphas", model["name"])
        alphas = [read_first_channel(os.path.join(pred_dir, name)) for name in sorted(os.listdir(pred_dir))]
        assert len(alphas) == model["images"] == 4 and not model["problems"]
        assert all(0 < np.mean((a > 0) & (a < 255)) for a in alphas)  # soft mattes, not saturated
        rows = evaluate_alone(pred_dir, benchmark, str(tmp_path / f"{model['name']}.csv"))
        means, _ = evaluate.mean_metrics([metrics for _, metrics in rows])
        assert model["means"] == means  # exactly: the same figures
        assert {name: data["images"][name][model["name"]] for name, _ in rows} == dict(rows)
        sads = {name: metrics["sad"] for name, metrics in rows}
        labels = {name: {"category": name.rsplit("_", 1)[0]} for name in sads}
        expected = {group: {"sad": mean, "images": count}
                    for group, mean, count in group_means(sads, labels, "category")}
        assert {group: figures[model["name"]] for group, figures in data["groups"]["category"].items()} == expected
        assert model["seconds_per_image"] > 0 and model["peak_memory_bytes"] > 2 ** 20
    sad_gca, sad_tiny = (model["means"]["sad"] for model in data["models"])
    assert sad_gca != sad_tiny


def test_the_markdown_csv_and_json_agree(compared):
    output, data = compared
    with open(os.path.join(output, "table.csv")) as f:
        rows = list(csv.DictReader(f))
    markdown = open(os.path.join(output, "table.md")).read()
    overall = [row for row in rows if row["group"] == "all"]
    assert [row["model"] for row in overall] == [model["name"] for model in data["models"]]
    for row, model in zip(overall, data["models"]):
        assert {key: float(row[key]) for key in data["columns"]} == model["means"]
        assert float(row["seconds_per_image"]) == model["seconds_per_image"]
        assert int(row["peak_memory_bytes"]) == model["peak_memory_bytes"]
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {model['name']} |"))
        assert all(f" {model['means'][key]:.{evaluate.DECIMALS[key]}f} " in line for key in data["columns"])
    groups = [row for row in rows if row["field"] == "category"]
    assert len(groups) == 2 * 2
    for row in groups:
        assert float(row["sad"]) == data["groups"]["category"][row["group"]][row["model"]]["sad"]
    assert "## Mean SAD per category" in markdown and "peak resident memory" in markdown


def test_the_gallery_shows_where_the_models_disagree_most(compared):
    output, data = compared
    page = open(os.path.join(output, "gallery", "index.html")).read()
    pictures = sorted(name for name in os.listdir(os.path.join(output, "gallery")) if name.endswith(".png"))
    assert len(pictures) == 2 and all(name in page for name in pictures)
    names = list(data["images"])
    spreads = {}
    for name in names:
        alphas = [read_first_channel(os.path.join(output, "alphas", model["name"], name.rsplit(".", 1)[0] + ".png"))
                  for model in data["models"]]
        spreads[name] = compare.disagreement(alphas)
    largest = max(spreads, key=spreads.get)
    assert pictures[0] == f"worst001_{largest.rsplit('.', 1)[0]}.png"
    assert all(spreads[name] > 0 for name in names)


def test_a_bad_model_or_benchmark_is_one_line_naming_it(setup, tmp_path, capsys):
    benchmark, models = setup
    missing = str(tmp_path / "nothing.pth")
    assert compare.main(model_flags([models[0], [models[1][0], missing]]) + [
        "--benchmark", benchmark, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and missing in err and "neither a file nor a released model's name" in err
    assert compare.main(model_flags(models) + ["--benchmark", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no benchmark layout found" in err and "merged/" in err
    gone = str(tmp_path / "gone")
    assert compare.main(model_flags(models) + ["--benchmark", gone, "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: --benchmark {gone} is not a folder\n"
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_two_gloo_processes_give_the_one_process_table(setup, compared, tmp_path):
    benchmark, models = setup
    _, alone = compared
    output = str(tmp_path / "sharded")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([ROOT, os.path.dirname(os.path.abspath(__file__))])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           os.path.join(ROOT, "tests", "one_block_gca.py"),
                           os.path.join(ROOT, "compare.py")] + model_flags(models) + [
                              "--benchmark", benchmark, "--output", output, "--device", "cpu",
                              "--category-from-prefix", "_", "--worst", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(os.path.join(output, "table.json")) as f:
        sharded = json.load(f)
    assert sharded["images"] == alone["images"] and sharded["groups"] == alone["groups"]
    assert [model["means"] for model in sharded["models"]] == [model["means"] for model in alone["models"]]
    assert "the largest of the 2 ranks" in open(os.path.join(output, "table.md")).read()
    assert all(math.isfinite(model["seconds_per_image"]) for model in sharded["models"])


def test_the_benchmark_layouts_and_a_released_models_name(tmp_path):
    for layout, folders, protocol in (("AIM-500", ("original", "mask", "trimap"), "aim500"),
                                      ("images + alphas + trimaps", ("image", "alphas", "trimaps"), "comp1k")):
        for folder in folders:
            os.makedirs(tmp_path / layout / folder)
        found = compare.find_benchmark(str(tmp_path / layout))
        assert (found.layout, found.protocol, found.categories) == (layout, protocol, None)
        assert found.images == str(tmp_path / layout / folders[0])
    (tmp_path / "AIM-500" / "aim_category_type.json").write_text('{"a": {"type": "SO", "category": "animal"}}')
    assert compare.find_benchmark(str(tmp_path / "AIM-500")).categories.endswith("aim_category_type.json")
    choices = compare.model_choices([["gca-dist"], ["gca-dist"]])  # no file needed before the model runs
    assert [choice.name for choice in choices] == ["gca-dist-1", "gca-dist-2"]
    assert choices[0].config.endswith(os.path.join("config", "gca-dist.toml"))
