"""``nnprune report``: the model card (YAML metadata, results, reproduce commands), the PNG
pictures and the data they drew, and the cards ``bertarize --compact`` and ``fill`` write."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_args, save_tiny_model, write_toy_sst2
from conftest import struct_masked as _struct_masked

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HUB_ID = "nnprune-tests/tiny-bert"  # what the tiny base model's config says it was loaded from
TRAIN = {"batch_size": 8, "max_seq_length": 32, "learning_rate": 1e-3, "seed": 3}


def _run(capsys, *argv) -> tuple[int, str, str]:
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _front_matter(card: Path) -> dict:
    text = card.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _check_png(path: Path, min_width: int = 800, max_width: int = 1000) -> tuple[int, int]:
    from PIL import Image

    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        width, height = im.size
        pixels = np.asarray(im.convert("L"))
    assert min_width <= width <= max_width, (path.name, width)
    assert 150 <= height <= 3000, (path.name, height)
    assert pixels.std() > 10  # not a blank canvas
    return width, height


def _reproduce_commands(card: Path) -> list[list[str]]:
    text = card.read_text().split("## Reproduce", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(cmd) for cmd in text.replace("\\\n", " ").strip().splitlines()]


@pytest.fixture()
def masked_ckpt(tmp_path, tokenizer) -> Path:
    """A struct-masked tiny BERT (see ``_struct_masked``): layer 0 keeps heads 0 and 2 (head 2's
    query is empty) and 42 of 64 FFN dims; layer 1 keeps nothing."""
    from nnprune.pruning_core import build_config
    from nnprune.pruning_core.checkpoint import save_checkpoint

    return save_checkpoint(_struct_masked("bert"), tmp_path / "masked",
                           config=build_config("struct"), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Real runs: a dense teacher and a hybrid (8x8 attention blocks, FFN dims) distilled from
    it with --target-density 0.5, on a tiny BERT and toy SST-2 data."""
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    root = tmp_path_factory.mktemp("runs")
    tiny = save_tiny_model(root / "tiny", "bert")
    # as a model downloaded from the hub says where it came from (transformers v4 saved it)
    config = json.loads((tiny / "config.json").read_text())
    (tiny / "config.json").write_text(json.dumps({**config, "_name_or_path": HUB_ID}))
    data = write_toy_sst2(root / "toy", n_train=64, n_dev=16)
    fine_prune(make_args(FinePruneArgs, task="sst2", model=str(tiny), output_dir=root / "dense",
                         data_dir=data, method="dense", max_steps=2, **TRAIN))
    fine_prune(make_args(FinePruneArgs, task="sst2", model=str(tiny), output_dir=root / "hybrid",
                         data_dir=data, method="hybrid", teacher=str(root / "dense"),
                         target_density=0.5, overrides=["attention_block=8x8"], max_steps=4,
                         **TRAIN))
    return {"tiny": tiny, "data": data, "dense": root / "dense", "hybrid": root / "hybrid"}


# ------------------------------------------------------------------------------ pictures
def test_pictures_of_a_masked_checkpoint_show_its_structure(masked_ckpt, tmp_path, capsys):
    from nnprune.pruning_core.architectures import find_sites
    from nnprune.pruning_core.checkpoint import load_model
    from nnprune.pruning_core.structure import analyze_structure
    from nnprune.report.plots import ffn_plot, heads_plot, pattern_plot

    out = tmp_path / "card"
    rc, stdout, err = _run(capsys, "report", masked_ckpt, "--output", out)
    assert rc == 0, err
    assert "README.md" in stdout and "3 pictures" in stdout
    assert not (masked_ckpt / "README.md").exists()  # --output: nothing beside the checkpoint
    for name in ("nnprune_pattern.png", "nnprune_heads.png", "nnprune_ffn.png"):
        _check_png(out / name)

    model = load_model(masked_ckpt).model
    structure = analyze_structure(model)
    heads = heads_plot(model, tmp_path / "heads.png", structure=structure)
    expected = np.zeros((2, 4), dtype=bool)
    for i, unit in enumerate(structure.attention):
        expected[i, unit.kept] = True
    assert np.array_equal(heads.kept, expected)
    assert heads.kept.tolist() == [[True, False, True, False], [False] * 4]
    assert heads.qk_empty.tolist() == [[False, False, True, False], [False] * 4]
    assert heads.rows == ["layer 0", "layer 1"] and heads.positions_known

    pattern = pattern_plot(model, tmp_path / "pattern.png", structure=structure)
    sites = find_sites(model)
    assert len(pattern.drawn) == len(pattern.panels) == len(sites) == 12
    assert pattern.rows == ["layer 0", "layer 1"]
    assert pattern.columns == ["q", "k", "v", "o", "ffn_in", "ffn_out"]
    assert set(pattern.drawn) == {(r, c) for r in pattern.rows for c in pattern.columns}
    v0 = pattern.panels[("layer 0", "v")]  # (hidden, heads x head size), heads 1 and 3 masked
    assert v0.shape == (32, 32) and pattern.factor == 1
    assert (v0[:, 0:8] == 1).all() and (v0[:, 8:16] == 0).all() and (v0[:, 24:32] == 0).all()
    assert (pattern.panels[("layer 1", "o")] == 0).all()
    assert pattern.kept[("layer 0", "q")] == pytest.approx(0.75)

    ffn = ffn_plot(model, tmp_path / "ffn.png", structure=structure)
    assert ffn.kept == [len(u.kept) for u in structure.ffn] == [42, 0]
    assert ffn.original == [64, 64]
    for name in ("heads.png", "pattern.png", "ffn.png"):
        _check_png(tmp_path / name)


def test_pattern_of_an_encoder_decoder_has_a_panel_per_matrix(tmp_path):
    from nnprune.pruning_core.architectures import find_sites
    from nnprune.report.plots import heads_plot, pattern_plot

    model = _struct_masked("bart", "seq2seq")
    pattern = pattern_plot(model, tmp_path / "pattern.png")
    sites = find_sites(model)
    assert len(pattern.drawn) == len(sites) == 2 * 6 + 2 * 10
    assert pattern.rows == ["enc. 0", "enc. 1", "dec. 0", "dec. 1"]
    assert "cross_q" in pattern.columns and ("enc. 0", "cross_q") not in pattern.panels
    heads = heads_plot(model, tmp_path / "heads.png")
    assert heads.rows == ["enc. 0 self", "enc. 1 self", "dec. 0 self", "dec. 0 cross",
                          "dec. 1 self", "dec. 1 cross"]
    _check_png(tmp_path / "pattern.png")
    _check_png(tmp_path / "heads.png")


def test_tradeoff_plot_draws_one_curve_per_route(tmp_path):
    from nnprune.report.plots import TradeoffPoint, tradeoff_plot

    points = [{"route": "hybrid", "speedup": 2.1, "metric": 0.85},
              {"route": "hybrid", "speedup": 1.5, "metric": 0.86, "label": "t=0.5"},
              TradeoffPoint("struct", 2.5, 0.82), TradeoffPoint("struct", 1.8, 0.84),
              {"route": "dense", "speedup": 1.0, "metric": 0.866}]
    drawn = tradeoff_plot(points, tmp_path / "tradeoff.png", metric="accuracy")
    assert drawn == {"hybrid": [(1.5, 0.86), (2.1, 0.85)], "struct": [(1.8, 0.84), (2.5, 0.82)],
                     "dense": [(1.0, 0.866)]}
    _check_png(tmp_path / "tradeoff.png")


def test_tradeoff_plot_draws_a_variant_dashed_in_its_routes_colour(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from nnprune.report.plots import tradeoff_plot

    styles = {}
    plot = Axes.plot

    def spy(self, *args, **kwargs):
        styles[kwargs["label"]] = (kwargs["color"], kwargs["linestyle"])
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    tradeoff_plot([{"route": "hybrid (lambda 0)", "speedup": 2.0, "metric": 0.87},
                   {"route": "hybrid", "speedup": 2.0, "metric": 0.86},
                   {"route": "struct", "speedup": 2.0, "metric": 0.85}], tmp_path / "t.png")
    assert styles["hybrid (lambda 0)"] == (styles["hybrid"][0], "--")
    assert styles["hybrid"][1] == "-" and styles["struct"][0] != styles["hybrid"][0]


def test_tradeoff_plot_gives_twelve_routes_twelve_colours_and_a_legend_below(tmp_path, monkeypatch):
    """Beyond ten routes the colours do not repeat (tab10 ran out and the eleventh route took
    the first one's), and a legend too long to sit beside the curves goes under them, the
    picture taller to hold it."""
    from matplotlib.axes import Axes
    from matplotlib.colors import to_rgb
    from PIL import Image

    from nnprune.report.plots import DPI, tradeoff_plot

    colours = {}
    plot = Axes.plot

    def spy(self, *args, **kwargs):
        colours[kwargs["label"]] = kwargs["color"]
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    few = [{"route": f"route {i}", "speedup": 1.5 + i / 10, "metric": 80.0 - i} for i in range(3)]
    tradeoff_plot(few, tmp_path / "few.png")
    many = [{"route": f"route {i}", "speedup": 1.5 + i / 10, "metric": 80.0 - i} for i in range(12)]
    tradeoff_plot(many, tmp_path / "many.png")
    assert len({to_rgb(colours[f"route {i}"]) for i in range(12)}) == 12
    short, tall = (Image.open(tmp_path / f).size[1] for f in ("few.png", "many.png"))
    assert short == round(4.8 * DPI) and tall > short + DPI
    # three routes, one of them with a label as wide as half the axes: under them too
    wide = few[:2] + [{"route": "width 288, lr 4e-4, warm-measured, layer-wise distillation "
                                "(2400 steps)", "speedup": 5.0, "metric": 86.0}]
    tradeoff_plot(wide, tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").size[1] > short


def test_tradeoff_plot_moves_a_label_off_a_near_one(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from nnprune.report.plots import tradeoff_plot

    labels = {}
    annotate = Axes.annotate

    def spy(self, text, xy, **kwargs):
        labels[(text, xy)] = (kwargs["xytext"], kwargs["color"])
        return annotate(self, text, xy, **kwargs)

    monkeypatch.setattr(Axes, "annotate", spy)
    tradeoff_plot([{"route": "hybrid", "speedup": 1.95, "metric": 60.0, "label": "2x"},
                   {"route": "one-shot", "speedup": 1.93, "metric": 60.1, "label": "2x"},
                   {"route": "one-shot", "speedup": 2.9, "metric": 56.4, "label": "3x"},
                   {"route": "dense", "speedup": 1.0, "metric": 57.4, "label": "dense"}],
                  tmp_path / "t.png", metric="f1")
    lower, higher = labels[("2x", (1.95, 60.0))], labels[("2x", (1.93, 60.1))]
    assert higher[0] == (4, 4) and lower[0][1] < 0          # the lower one goes below its point
    assert labels[("3x", (2.9, 56.4))][0] == (4, 4)        # far from the others: above
    assert lower[1] != higher[1] and labels[("dense", (1.0, 57.4))][1] == "black"
    _check_png(tmp_path / "t.png")


# ---------------------------------------------------------------------------------- card
def test_card_metadata_results_and_reproduce_command(runs, tmp_path, capsys):
    from nnprune.measure.timing import SpeedReport, SpeedRow
    from nnprune.workflows.evaluate import EvaluationResult

    row = SpeedRow(batch_size=1, seq_len=128, baseline_ms=79.4, baseline_p90_ms=80.0,
                   model_ms=34.6, model_p90_ms=35.0, baseline_throughput=12.6,
                   model_throughput=28.9, speedup=2.2948, baseline_gflops=1.0, model_gflops=0.5,
                   theoretical_speedup=1.82, efficiency=1.26)
    speed = SpeedReport(model=str(runs["hybrid"]), model_kind="compacted",
                        baseline=str(runs["dense"]), runtime="pytorch", device="cpu",
                        dtype="fp32", quantize=None, threads=1, warmup=5, iters=10, cpu="AMD EPYC",
                        torch_version="2", rows=[row])
    (tmp_path / "speed.json").write_text(json.dumps(speed.to_dict()))
    evaluation = EvaluationResult(task="sst2", checkpoint=str(runs["hybrid"]), kind="masked",
                                  metrics={"accuracy": 0.625, "eval_loss": 0.69},
                                  main_metric="accuracy", max_seq_length=32, num_examples=16,
                                  num_features=16, seconds=0.5)
    (tmp_path / "eval.json").write_text(json.dumps(evaluation.to_dict()))

    out = tmp_path / "card"
    rc, stdout, err = _run(capsys, "report", runs["hybrid"], "--output", out, "--speed",
                           tmp_path / "speed.json", "--eval", tmp_path / "eval.json", "--json")
    assert rc == 0, err
    payload = json.loads(stdout)  # --json: stdout holds the JSON alone
    assert payload["card"] == str(out / "README.md") and payload["kind"] == "masked"

    meta = _front_matter(out / "README.md")
    assert meta["base_model"] == HUB_ID  # the hub id the checkpoint knows, not a local path
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["datasets"] == ["nyu-mll/glue"]
    assert meta["metrics"] == ["accuracy"]
    assert {"nnprune", "pruning", "movement-pruning"} <= set(meta["tags"])
    result = meta["model-index"][0]["results"][0]
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"]["type"] == "nyu-mll/glue" and result["dataset"]["config"] == "sst2"
    assert result["metrics"] == [{"type": "accuracy", "value": 0.625, "name": "Accuracy"}]
    assert payload["metadata"] == meta

    text = (out / "README.md").read_text()
    info = json.loads((runs["hybrid"] / "nnprune_config.json").read_text())
    teacher = json.loads((runs["dense"] / "nnprune_results.json").read_text())
    t_acc = teacher["metrics"]["accuracy"]
    assert "dense teacher" in text and f"{100 * 0.625 / t_acc:.1f}%" in text
    assert f"| density | {info['results']['density']:.4f} |" in text
    assert "| 1 x 128 | 79.4 | 34.6 | **2.29x** | 1.82x | 1.26 |" in text
    assert "`nnprune evaluate`" in text and "| accuracy (main) | 0.6250 |" in text
    assert "| layer | heads kept | FFN dims kept |" in text
    for name in ("nnprune_pattern.png", "nnprune_heads.png", "nnprune_ffn.png"):
        assert f"]({name})" in text
        _check_png(out / name)
    assert "target density: 0.5" in text and "blocks: attention `8x8`" in text

    # The reproduce command is a real command line: run it, get the same run.
    (cmd,) = _reproduce_commands(out / "README.md")
    assert cmd[:3] == ["nnprune", "fine-prune", "sst2"]
    args = cmd[2:]
    again = tmp_path / "again"
    args[args.index("--output-dir") + 1] = str(again)
    rc, _, err = _run(capsys, "fine-prune", *args)
    assert rc == 0, err
    redo = json.loads((again / "nnprune_config.json").read_text())
    assert redo["pruning"] == info["pruning"]
    same = {k: v for k, v in info["training"].items() if k != "output_dir"}
    assert {k: v for k, v in redo["training"].items() if k != "output_dir"} == same
    assert redo["results"]["density"] == pytest.approx(info["results"]["density"])


@pytest.mark.parametrize("task", ["text-classification", "token-classification",
                                  "question-answering", "summarization"])
def test_generic_tasks_have_a_pipeline_tag_and_the_runs_hub_dataset(task, tmp_path):
    from nnprune.pruning_core.run_record import RunConfig
    from nnprune.report.card import build_metadata, task_card

    on_hub = RunConfig.from_dict({"task": task, "training": {"task_options": {
        "dataset": "org/data", "dataset_config": "en", "validation_split": "test"}}})
    meta = build_metadata(on_hub, "m", {"f1": 0.5}, "f1", None)
    assert meta["pipeline_tag"] == task and meta["datasets"] == ["org/data"]
    result = meta["model-index"][0]["results"][0]
    assert result["task"]["type"] == task
    assert result["dataset"] == {"name": "org/data (en)", "type": "org/data", "config": "en",
                                 "split": "test"}
    # local files (or a local dataset folder): a pipeline tag, no dataset to name
    folder = {"task": task, "training": {"task_options": {"dataset": str(tmp_path)}}}
    for info in map(RunConfig.from_dict, ({"task": task, "training": {"data_dir": "d"}}, folder)):
        meta = build_metadata(info, "m", {"f1": 0.5}, "f1", "d")
        assert meta["pipeline_tag"] == task
        assert "datasets" not in meta and "model-index" not in meta
        assert task_card(info).dataset_name == "the evaluation data"


def test_report_refuses_to_replace_a_foreign_readme(masked_ckpt, capsys):
    from nnprune.report.card import MARKER

    readme = masked_ckpt / "README.md"
    readme.write_text("# my own notes\n")
    rc, _, err = _run(capsys, "report", masked_ckpt)
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not written by nnprune" in lines[0]
    assert "--overwrite" in lines[0]
    assert readme.read_text() == "# my own notes\n"
    assert not (masked_ckpt / "nnprune_pattern.png").exists()  # refused before any work

    rc, _, err = _run(capsys, "report", masked_ckpt, "--overwrite")
    assert rc == 0, err
    assert MARKER in readme.read_text()
    rc, _, err = _run(capsys, "report", masked_ckpt)  # its own card: replaced without asking
    assert rc == 0, err
    meta = _front_matter(readme)  # no nnprune run recorded: still a valid card
    assert meta["library_name"] == "transformers" and "base_model" not in meta


def test_report_errors_are_one_line(masked_ckpt, tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"rows": [{"batch_size": 1}]}))
    for argv, message in [
        (["report", tmp_path / "nope"], "does not exist"),
        (["report", masked_ckpt, "--speed", tmp_path / "bad.json"], "is not a `nnprune speed"),
        (["report", masked_ckpt, "--eval", tmp_path / "missing.json"], "--eval"),
    ]:
        rc, _, err = _run(capsys, *argv)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and message in lines[0], (argv, err)
    assert not (masked_ckpt / "README.md").exists()


def test_bertarize_compact_writes_a_card_unless_no_card(masked_ckpt, tmp_path, capsys):
    from nnprune.pruning_core.checkpoint import load_model
    from nnprune.report.plots import heads_data

    out = tmp_path / "compact"
    rc, stdout, err = _run(capsys, "bertarize", masked_ckpt, "--output", out, "--compact")
    assert rc == 0, err
    assert "README.md" in stdout
    meta = _front_matter(out / "README.md")
    assert "nnprune" in meta["tags"]
    text = (out / "README.md").read_text()
    # Head 2 of layer 0 (empty query) is kept: removing it is inexact.
    assert "trust_remote_code=True" in text and "2/8 attention heads" in text
    for name in ("nnprune_pattern.png", "nnprune_heads.png", "nnprune_ffn.png"):
        _check_png(out / name)
    # Compacted: the kept heads are drawn first (positions are not recorded).
    heads = heads_data(load_model(out).model)
    assert not heads.positions_known
    assert heads.kept.tolist() == [[True, True, False, False], [False] * 4]
    assert heads.qk_empty.tolist() == [[False, True, False, False], [False] * 4]

    plain = tmp_path / "plain"  # without --compact: no card
    rc, _, err = _run(capsys, "bertarize", masked_ckpt, "--output", plain)
    assert rc == 0, err
    assert not (plain / "README.md").exists()
    skipped = tmp_path / "skipped"
    rc, _, err = _run(capsys, "bertarize", masked_ckpt, "--output", skipped, "--compact",
                      "--no-card")
    assert rc == 0, err
    assert not (skipped / "README.md").exists() and not list(skipped.glob("*.png"))


def test_fill_writes_a_card_with_both_stages(runs, tmp_path, capsys):
    out = tmp_path / "filled"
    rc, stdout, err = _run(capsys, "fill", runs["hybrid"], "sst2", "--teacher", runs["dense"],
                           "--output-dir", out, "--data-dir", runs["data"], "--max-steps", "1",
                           "--batch-size", "8", "--max-seq-length", "32", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["steps"] == 1  # the card's line went to stderr
    assert "README.md" in err
    meta = _front_matter(out / "README.md")
    assert meta["base_model"] == HUB_ID
    assert meta["model-index"][0]["results"][0]["metrics"][0]["type"] == "accuracy"
    text = (out / "README.md").read_text()
    assert "Hybrid Filled" in text and "after pruning, before fill" in text
    commands = _reproduce_commands(out / "README.md")
    assert [c[:2] for c in commands] == [["nnprune", "fine-prune"], ["nnprune", "fill"]]
    fill_cmd = commands[1]
    assert fill_cmd[2:4] == [str(runs["hybrid"]), "sst2"]
    assert fill_cmd[fill_cmd.index("--teacher") + 1] == str(runs["dense"])
    assert fill_cmd[fill_cmd.index("--max-steps") + 1] == "1"
    _check_png(out / "nnprune_pattern.png")


def test_reproduce_command_keeps_the_speed_target_and_its_setting():
    from nnprune.pruning_core.run_record import CommandOptions
    from nnprune.report.card import fill_command, fine_prune_command

    record = {"task": "sst2", "model": "m", "method": "hybrid-filled", "teacher": "t",
              "target_speedup": 2.0, "max_steps": 10, "output_dir": "o",
              "latency": {"device": "cpu", "dtype": "fp32", "batch_size": 1, "seq_len": 128,
                          "threads": 1}}
    words = fine_prune_command(CommandOptions(record), None, None).replace("\\\n", " ").split()
    assert words[words.index("--target-speedup") + 1] == "2"
    assert words[words.index("--latency-seq-len") + 1] == "128"
    assert words[words.index("--latency-threads") + 1] == "1"
    assert "--latency-device" not in words  # defaults are left out
    assert "--target-speedup" not in fine_prune_command(
        CommandOptions({**record, "target_speedup": None}), None, None)
    fill_words = fill_command(CommandOptions({**record, "checkpoint": "c"}), None).split()
    assert "--target-speedup" in fill_words


# ------------------------------------------------------------------ what a card tells its readers
def _use_it_path(card: Path) -> str:
    snippet = card.read_text().split("## Use it", 1)[1]
    return snippet.split('from_pretrained("', 1)[1].split('"', 1)[0] if "load_pretrained" not in \
        snippet else snippet.split('load_pretrained("', 1)[1].split('"', 1)[0]


def test_card_names_no_local_path_and_loads_the_folder_with_the_weights(runs, tmp_path, capsys,
                                                                         monkeypatch):
    out = tmp_path / "card"
    rc, _, err = _run(capsys, "report", runs["hybrid"], "--output", out)
    assert rc == 0, err
    text = (out / "README.md").read_text()
    root = str(runs["tiny"].parent)
    # the author's disk shows nowhere but in the records quoted as they are: the pruning config
    # and the commands that rebuild the model
    head, config = text.split("<details><summary>Pruning configuration", 1)
    prose = head + config.split("</details>", 1)[1].split("## Reproduce", 1)[0]
    assert root not in prose + text.split("## Use it", 1)[1]
    first = text.split("\n# ", 1)[1].splitlines()[2]
    assert first.startswith("A bert model for `sst2`, fine-pruned with nnprune's `hybrid` method "
                            f"from a local model derived from [{HUB_ID}](https://huggingface.co/{HUB_ID}).")
    assert "distilled from `dense` (a local folder)" in text
    # "Use it" loads the checkpoint (the --output folder holds the card and pictures alone): by
    # its name, given as an absolute path; as given, relative to where the command ran
    assert _use_it_path(out / "README.md") == "hybrid"
    assert not (out / "model.safetensors").exists()
    monkeypatch.chdir(runs["hybrid"].parent.parent)
    given = Path(runs["hybrid"].parent.name) / "hybrid"
    rc, _, err = _run(capsys, "report", given, "--output", out)
    assert rc == 0, err
    assert _use_it_path(out / "README.md") == str(given)
    assert (given / "model.safetensors").is_file()
    rc, _, err = _run(capsys, "report", runs["hybrid"])  # the card in the checkpoint: its name
    assert rc == 0, err
    assert _use_it_path(runs["hybrid"] / "README.md") == "hybrid"


def test_base_model_is_a_hub_id_or_left_out(tmp_path):
    from nnprune.pruning_core.run_record import RunConfig
    from nnprune.report.card import build_metadata, hub_base_model

    local = save_tiny_model(tmp_path / "local", "bert")  # no hub id anywhere
    meta = build_metadata(RunConfig(task="sst2", base_model=str(local)), "m", {}, None)
    assert "base_model" not in meta
    assert hub_base_model(str(local)) == (None, False)
    meta = build_metadata(RunConfig(task="sst2", base_model="org/model"), "m", {}, None)
    assert meta["base_model"] == "org/model" and hub_base_model("org/model") == ("org/model", True)


def test_a_card_without_metrics_says_how_to_get_them(masked_ckpt, capsys):
    from nnprune.cli.main import app
    import typer

    rc, _, err = _run(capsys, "report", masked_ckpt)
    assert rc == 0, err
    text = (masked_ckpt / "README.md").read_text()
    hint = "`nnprune evaluate TASK PATH --json-file FILE`"
    assert hint in text
    evaluate = typer.main.get_command(app).commands["evaluate"]
    evaluate.make_context("evaluate", ["sst2", str(masked_ckpt), "--json-file", "e.json"])


def test_a_prune_card_gives_the_prune_command_that_made_it(runs, tmp_path, capsys):
    """The card of a ``prune`` output (and of a ``prune --then-fill`` one) reproduces it with
    the real command, not placeholders: run it again, get the same recorded options."""
    out = tmp_path / "pruned"
    argv = ["prune", runs["dense"], "sst2", "--target-flops", "0.5", "--output-dir", out,
            "--data-dir", runs["data"], "--calibration-samples", "32", "--no-speed-probe",
            "--batch-size", "8", "--max-seq-length", "32", "--max-eval-samples", "8",
            "--then-fill", "1"]
    rc, _, err = _run(capsys, *argv)
    assert rc == 0, err
    # the pruned model (OUTPUT/prune) and the filled one (OUTPUT): one command made both
    for folder in (out / "prune", out):
        rc, _, err = _run(capsys, "report", folder)
        assert rc == 0, err
        (cmd,) = _reproduce_commands(folder / "README.md")
        assert cmd[:4] == ["nnprune", "prune", str(runs["dense"]), "sst2"]
        assert "METHOD" not in cmd and "TASK" not in cmd and "--method" not in cmd
        assert cmd[cmd.index("--then-fill") + 1] == "1"
        assert cmd[cmd.index("--output-dir") + 1] == str(out)
        assert cmd[cmd.index("--target-flops") + 1] == "0.5"
        assert cmd[cmd.index("--calibration-samples") + 1] == "32"
        assert "--no-speed-probe" not in cmd  # it changes no result
    # run it: the same options recorded
    again = tmp_path / "again"
    cmd[cmd.index("--output-dir") + 1] = str(again)
    rc, _, err = _run(capsys, *cmd[1:])
    assert rc == 0, err
    first = json.loads((out / "prune" / "nnprune_config.json").read_text())["post_training"]
    redo = json.loads((again / "prune" / "nnprune_config.json").read_text())["post_training"]
    drop = ("output_dir", "speed_probe")
    assert ({k: v for k, v in redo["options"].items() if k not in drop}
            == {k: v for k, v in first["options"].items() if k not in drop})
    assert redo["kept"] == first["kept"]
