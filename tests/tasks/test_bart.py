"""BART / CNN-DailyMail (issue #6): roles, compaction with generation, the ``cnn_dailymail`` task
on the real files in ``shared/data/cnn_dm``, seq2seq distillation, the decoder lambda scale, an
end-to-end fine-prune and count-params for encoder + decoder."""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, make_args, save_tiny_model, tiny_config

from nnprune.errors import NNPruneError
from nnprune.tasks import DataArgs, get_task
from nnprune.tasks.cnn_dailymail import (
    CNN_DAILYMAIL,
    find_url_lists,
    read_rows_file,
    read_story_file,
    read_url_list,
    url_hash,
)
from nnprune.tasks.summarization import GenerationSettings
from nnprune.tasks.summarization_metrics import rouge_scores

CNN_DM = SHARED_DATA / "cnn_dm"
STORIES = CNN_DM / "cnn_stories"
VALIDATION_CSV = CNN_DM / "validation_subset_1000" / "cnn_dailymail_validation_subset.csv"
needs_data = pytest.mark.skipif(not STORIES.is_dir(), reason="shared CNN/DM data not available")
TOL = 1e-4
# Small generation settings: a random tiny model would otherwise run to max_length 142.
FAST_GENERATION = "num_beams=2,max_length=12,min_length=2,no_repeat_ngram_size=0"


def _bart(seed: int = 0, **overrides):
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    return AutoModelForSeq2SeqLM.from_config(tiny_config("bart", **overrides)).eval()


def _probe():
    from nnprune.pruning_core.compact import probe_inputs

    return probe_inputs(tiny_config("bart"))


# ----------------------------------------------------------------------------- roles


def test_patching_finds_ten_linears_per_decoder_layer_and_six_per_encoder_layer():
    from nnprune.pruning_core import build_config, patch_model
    from nnprune.pruning_core.masked import MaskedLinear

    model = _bart()
    pruner = patch_model(model, build_config("hybrid-nt", overrides={"attention_block": "8x8"}))
    per_layer: dict[tuple[str, int], int] = {}
    for p in pruner:
        per_layer[(p.site.stack, p.site.layer)] = per_layer.get((p.site.stack, p.site.layer), 0) + 1
    assert per_layer == {("encoder", 0): 6, ("encoder", 1): 6, ("decoder", 0): 10, ("decoder", 1): 10}
    masked = {n for n, m in model.named_modules() if isinstance(m, MaskedLinear)}
    assert len(masked) == 32 and not any("lm_head" in n for n in masked)
    dec0 = {n.split("decoder.layers.0.")[1] for n in masked if "decoder.layers.0." in n}
    assert dec0 == {f"{a}.{x}_proj" for a in ("self_attn", "encoder_attn") for x in "qkvo"
                    if x != "o"} | {"self_attn.out_proj", "encoder_attn.out_proj", "fc1", "fc2"}
    assert all(p.site.is_decoder == (p.site.stack == "decoder") for p in pruner)


# ----------------------------------------------------------------------------- compaction


def _set_masks(model, kind: str):
    """Give a patched tiny BART structured masks: in every layer and attention (self, cross),
    heads 1 and 3 of V (struct) or V's block row 1 and O's block column 3 (8x8 blocks) are
    pruned, plus scattered blocks (block only); every third FFN dimension is pruned."""
    from nnprune.pruning_core import Role, build_config, patch_model

    cfg = build_config("struct") if kind == "struct" else build_config(
        "hybrid-nt", overrides={"attention_block": "8x8"})
    pruner = patch_model(model, cfg)
    pruner.finalize()
    gen = torch.Generator().manual_seed(1)
    for p in pruner.score_owners:
        s = p.layer.mask_scores.data
        s.fill_(5.0)
        role = p.site.role
        if role is Role.FFN_IN:
            s[::3] = -5.0
        elif kind == "struct" and role is Role.VALUE:
            s[[1, 3]] = -5.0
        elif kind == "block":
            s[torch.rand(s.shape, generator=gen) < 0.2] = -5.0  # not removable: stays as zeros
            if role is Role.VALUE:
                s[1, :] = -5.0
            elif role is Role.ATTN_OUTPUT:
                s[:, 3] = -5.0
    return pruner


@pytest.mark.parametrize("kind", ["block", "struct"])
def test_compacted_bart_gives_same_logits_and_generation_as_masked(kind):
    from nnprune.pruning_core.compact import compact_model, max_abs_diff, model_outputs

    model = _bart()
    with torch.no_grad():  # larger weights: greedy decoding of a random tiny model varies more
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    _set_masks(model, kind)
    inputs = _probe()
    kw = {"attention_mask": inputs["attention_mask"], "max_new_tokens": 8, "do_sample": False}
    masked = model_outputs(model, inputs)
    with torch.no_grad():
        greedy = model.generate(inputs["input_ids"], num_beams=1, **kw)
        beams = model.generate(inputs["input_ids"], num_beams=2, **kw)
    assert len({tuple(r.tolist()) for r in greedy}) > 1  # not a degenerate constant output

    compacted = copy.deepcopy(model)
    report = compact_model(compacted)
    assert report.exact and report.params_after < report.params_before
    by_unit = {(a.stack, a.layer, a.name): a.kept for a in report.attention}
    assert set(by_unit) == {(s, layer, n) for s in ("encoder", "decoder") for layer in (0, 1)
                            for n in (("self",) if s == "encoder" else ("self", "cross"))}
    assert set(by_unit.values()) == {2}  # heads 1 and 3 (struct) / 1 and 3 (V row, O column)
    assert {f.kept for f in report.ffn} == {64 - 22}
    assert max_abs_diff(masked, model_outputs(compacted, inputs)) <= TOL
    with torch.no_grad():
        assert torch.equal(compacted.generate(inputs["input_ids"], num_beams=1, **kw), greedy)
        assert torch.equal(compacted.generate(inputs["input_ids"], num_beams=2, **kw), beams)


# ----------------------------------------------------------------------------- data


@needs_data
def test_story_reader_on_real_files():
    files = sorted(STORIES.glob("*.story"))
    assert len(files) == 20
    for f in files:
        story = read_story_file(f)
        text = f.read_text(encoding="utf-8")
        n_marks = sum(1 for line in text.splitlines() if line.strip().startswith("@highlight"))
        assert story.id == f.stem and story.article.strip()
        assert "@highlight" not in story.article and "\n" not in story.article
        highlights = story.highlights.split("\n")
        assert len(highlights) == n_marks and all(h.strip() for h in highlights)
        # the standard preprocessing ends every line with punctuation
        assert all(h.endswith((".", "!", "?", "'", '"', ")", "\u2019", "\u201d")) for h in highlights)
    first = read_story_file(files[0])
    assert first.article.startswith("WASHINGTON (CNN) -- As he awaits a crucial progress report")
    assert first.highlights.split("\n")[0] == (
        "President Bush to address the Veterans of Foreign Wars on Wednesday .")


@needs_data
def test_url_lists_split_the_real_stories_ten_ten(tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="nnprune")
    task = get_task("cnn_dailymail")
    assert task.preset is CNN_DAILYMAIL
    assert find_url_lists(STORIES) == CNN_DM / "url_lists"  # found in the parent
    data = task.load_data(tokenizer, DataArgs(data_dir=STORIES, max_seq_length=64))
    assert len(data.train) == 10 and len(data.eval["validation"]) == 10
    assert "url_lists" in caplog.text and "10 of 10" in task.split_info
    val_ids = read_url_list(CNN_DM / "url_lists" / "all_val.txt")
    assert data.eval_examples["validation"].ids == val_ids
    train_ids = set(read_url_list(CNN_DM / "url_lists" / "all_train.txt"))
    assert not train_ids & set(val_ids) and len(train_ids) == 10
    row = data.eval["validation"][0]
    assert set(row) == {"input_ids", "attention_mask", "labels"}
    assert len(row["input_ids"]) == 64 and len(row["labels"]) <= task.max_target_length
    assert url_hash("http://example.com/a\n") == url_hash("http://example.com/a")


@needs_data
def test_story_folder_without_url_lists_splits_by_sorted_name(tmp_path, tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="nnprune")
    files = sorted(STORIES.glob("*.story"))[:12]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    task = get_task("cnn_dailymail")
    data = task.load_data(tokenizer, DataArgs(data_dir=tmp_path, max_seq_length=32))
    assert "every 10th" in caplog.text
    assert data.eval_examples["validation"].ids == [files[0].stem, files[10].stem]
    assert len(data.train) == 10
    # only the validation split when training data is not needed
    data = task.load_data(tokenizer, DataArgs(data_dir=tmp_path, max_seq_length=32,
                                              max_eval_samples=1), need_train=False)
    assert data.train is None and len(data.eval["validation"]) == 1


@needs_data
def test_csv_reader_on_real_validation_subset(tokenizer):
    rows = read_rows_file(VALIDATION_CSV)
    assert len(rows) == 1000 and len({r.id for r in rows}) == 1000
    assert sum("\n" in r.highlights for r in rows) > 900
    assert all(r.article.strip() and r.highlights.strip() for r in rows)
    assert rows[0].highlights.split("\n")[0] == (
        "Zully Broussard decided to give a kidney to a stranger .")
    task = get_task("cnn_dailymail")
    data = task.load_data(tokenizer, DataArgs(validation_file=VALIDATION_CSV, max_eval_samples=5,
                                              max_seq_length=32), need_train=False)
    assert len(data.eval["validation"]) == 5
    assert data.eval_examples["validation"].highlights[0] == rows[0].highlights


def test_local_data_errors(tmp_path, tokenizer):
    task = get_task("cnn_dailymail")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NNPruneError, match=r"no \.story files in .*empty"):
        task.load_data(tokenizer, DataArgs(data_dir=tmp_path / "empty"))
    bad = tmp_path / "bad.csv"
    bad.write_text('article,summary\n"a b",c\n')
    with pytest.raises(NNPruneError, match="missing column.*'highlights'"):
        task.load_data(tokenizer, DataArgs(validation_file=bad), need_train=False)
    good = tmp_path / "val.jsonl"
    good.write_text(json.dumps({"article": "x y", "highlights": "z"}) + "\n")
    with pytest.raises(NNPruneError, match="no training data: pass --train-file"):
        task.load_data(tokenizer, DataArgs(validation_file=good))


def test_generation_settings_from_task_options():
    task = get_task("cnn_dailymail", {"num_beams": "2", "max_length": "20", "min_length": "0",
                                      "early_stopping": "no"})
    assert task.generation == GenerationSettings(num_beams=2, max_length=20, min_length=0,
                                                 early_stopping=False)
    assert CNN_DAILYMAIL.generation.num_beams == 4  # the preset's default is untouched
    with pytest.raises(NNPruneError, match="unknown generation setting key 'beams'; known: .*num_beams"):
        get_task("cnn_dailymail", {"beams": "2"})
    with pytest.raises(NNPruneError, match="num_beams expects an int"):
        get_task("cnn_dailymail", {"num_beams": "two"})
    with pytest.raises(NNPruneError, match="min_length must be in"):
        get_task("cnn_dailymail", {"max_length": "20"})
    with pytest.raises(NNPruneError, match="task sst2 takes no --task-option"):
        get_task("sst2", {"num_beams": "2"})


def test_rouge_scores_bounds_and_lsum_sentences():
    ref = "The cat sat on the mat .\nIt was happy ."
    same = rouge_scores([ref.replace("\n", " ")], [ref])
    assert all(abs(v - 100.0) < 1e-9 for v in same.values())
    assert set(same) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert rouge_scores(["dogs bark loudly"], [ref]) == dict.fromkeys(same, 0.0)
    swapped = rouge_scores(["It was happy . The cat sat on the mat ."], [ref])
    assert swapped["rougeLsum"] == pytest.approx(100.0) and swapped["rougeL"] < 100.0


@needs_data
def test_evaluate_decodes_generations_and_scores_them_against_references(tokenizer):
    """A stand-in model that "generates" each article's reference: ROUGE must be 100, in
    batches with a remainder, through decoding, sentence splitting (rougeLsum) and the loss."""
    from types import SimpleNamespace

    task = get_task("cnn_dailymail")
    data = task.load_data(tokenizer, DataArgs(validation_file=VALIDATION_CSV, max_eval_samples=4,
                                              max_seq_length=48), need_train=False)
    ds = data.eval["validation"]
    answers = {tuple(r["input_ids"]): r["labels"] for r in ds}

    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.calls: list[int] = []

        def forward(self, input_ids, attention_mask, labels):
            assert labels.shape[0] == input_ids.shape[0]
            return SimpleNamespace(loss=torch.tensor(1.5))

        def generate(self, input_ids, attention_mask, **kw):
            assert not self.training and kw["num_beams"] == 4 and kw["max_length"] == 142
            self.calls.append(input_ids.shape[0])
            rows = [answers[tuple(r[m.bool()].tolist())] for r, m in zip(input_ids, attention_mask)]
            out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
            for i, r in enumerate(rows):
                out[i, : len(r)] = torch.tensor(r)
            return out

    model = Echo().train()
    trainer = SimpleNamespace(model=model, processing_class=tokenizer,
                              args=SimpleNamespace(per_device_eval_batch_size=3))
    metrics = task.evaluate(trainer, data)
    assert model.calls == [3, 1] and model.training  # training mode restored
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert metrics[key] == pytest.approx(100.0), metrics
    assert metrics["eval_loss"] == pytest.approx(1.5)
    assert metrics["gen_len"] == pytest.approx(sum(len(r["labels"]) for r in ds) / 4)


# ----------------------------------------------------------------------------- training losses


def test_distillation_on_decoder_logits_respects_label_mask(tmp_path, tokenizer):
    from transformers import DataCollatorForSeq2Seq, TrainingArguments

    import nnprune
    from nnprune import distillation_loss
    from nnprune.pruning_core import build_config
    from nnprune.workflows.trainer import PruningTrainer

    task = get_task("cnn_dailymail")
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    batch = collator([
        {"input_ids": [101, 2054, 2003, 102], "attention_mask": [1] * 4,
         "labels": [101, 7592, 2088, 2000, 102]},
        {"input_ids": [101, 2129, 102], "attention_mask": [1] * 3, "labels": [101, 2748, 102]},
    ])
    mask = task.distillation_mask(batch)
    assert mask.tolist() == [[True] * 5, [True, True, True, False, False]]

    gen = torch.Generator().manual_seed(0)
    student, teacher = (torch.randn(2, 5, 50, generator=gen) for _ in range(2))
    loss = distillation_loss(student, teacher, 2.0, mask)
    kl = torch.nn.functional.kl_div(torch.log_softmax(student[mask] / 2, -1),
                                    torch.log_softmax(teacher[mask] / 2, -1),
                                    log_target=True, reduction="batchmean") * 4
    assert float(loss) == pytest.approx(float(kl), rel=1e-5)
    noisy = student.clone()
    noisy[1, 3:] = 100 * torch.randn(2, 50, generator=gen)  # padded positions: ignored
    assert float(distillation_loss(noisy, teacher, 2.0, mask)) == pytest.approx(float(loss), rel=1e-6)
    assert float(distillation_loss(noisy, teacher, 2.0)) != pytest.approx(float(loss), rel=1e-3)

    # Through the trainer: the distilled tensors are the decoder logits, masked by the labels.
    no_dropout = {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}
    model, teacher_model = _bart(0, **no_dropout), _bart(1, **no_dropout)
    cfg = build_config("dense").replace(alpha_ce=0.1, alpha_teacher=0.9)
    trainer = PruningTrainer(
        model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]),
        pruning=nnprune.attach_masks(model, config=cfg), task=task, teacher=teacher_model)
    model.train()
    total = trainer.compute_loss(model, dict(batch))
    with torch.no_grad():
        s_logits = model(**batch).logits
        t_logits = teacher_model(**batch).logits
        ce = model(**batch).loss
    assert s_logits.shape == (2, 5, model.config.vocab_size)
    expected = distillation_loss(s_logits, t_logits, cfg.temperature, mask)
    assert trainer._extra_logs["distill_loss"][0] == pytest.approx(float(expected), rel=1e-4)
    assert float(total.detach()) == pytest.approx(float(0.1 * ce + 0.9 * expected), rel=1e-4)


def test_decoder_lambda_scale_weights_decoder_regularization(tmp_path):
    from nnprune.pruning_core import patch_model
    from nnprune.pruning_core.masked import MaskedLinear
    from nnprune.workflows.fine_prune import FinePruneArgs, resolve_config

    def config(*sets: str):
        return resolve_config(make_args(FinePruneArgs, task="cnn_dailymail", model="unused",
                                            output_dir=tmp_path, overrides=list(sets)))

    def loss_and_hand(cfg):
        model = _bart()
        pruner = patch_model(model, cfg)
        gen = torch.Generator().manual_seed(0)
        for p in pruner.score_owners:
            p.layer.mask_scores.data = torch.randn(p.layer.mask_scores.shape, generator=gen)
        pruner.multiplier = 0.7
        groups: dict[str, list[float]] = {"attention": [], "ffn": []}
        for name, m in model.named_modules():
            if isinstance(m, MaskedLinear) and m.owns_scores:
                scale = cfg.decoder_lambda_scale if ".decoder." in name else 1.0
                group = "ffn" if name.endswith(".fc1") else "attention"
                groups[group].append(scale * float(torch.sigmoid(m.mask_scores.detach()).mean()))
        lam = {"attention": cfg.attention_lambda, "ffn": cfg.ffn_lambda}
        hand = sum(0.7 * lam[g] * sum(v) / len(v) for g, v in groups.items())
        assert len(groups["attention"]) == 2 * 4 + 2 * 8 and len(groups["ffn"]) == 4
        return float(pruner.regularization_loss().detach()), hand

    scaled = config("decoder_lambda_scale=2", "attention_block=8x8")
    assert scaled.decoder_lambda_scale == 2.0 and scaled.attention_lambda == 20.0
    loss, hand = loss_and_hand(scaled)
    assert loss == pytest.approx(hand, rel=1e-6)
    loss1, hand1 = loss_and_hand(config("attention_block=8x8"))
    assert loss1 == pytest.approx(hand1, rel=1e-6) and loss > loss1 * 1.2


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_bart_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny-bart", "bart", head="seq2seq")


@pytest.fixture(scope="module")
def story_dir(tmp_path_factory) -> Path:
    """8 real stories in ``stories/`` (4 listed for training, 4 for validation) and the URL lists
    of those 8 in the parent's ``url_lists/``."""
    root = tmp_path_factory.mktemp("cnn_dm")
    (root / "stories").mkdir()
    (root / "url_lists").mkdir()
    for split in ("train", "val"):
        urls = [u for u in (CNN_DM / "url_lists" / f"all_{split}.txt").read_text().splitlines()
                if u.strip()][:4]
        (root / "url_lists" / f"all_{split}.txt").write_text("\n".join(urls) + "\n")
        for u in urls:
            shutil.copy(STORIES / f"{url_hash(u)}.story", root / "stories")
    return root / "stories"


@needs_data
def test_fine_prune_cnn_dailymail_end_to_end(tiny_bart_dir, story_dir, tmp_path, monkeypatch,
                                             capsys):
    from rich.console import Console

    from nnprune.cli.count_params import print_count_summary, render_count_table
    from nnprune.cli.main import main
    from nnprune.workflows.evaluate import evaluate_checkpoint
    from nnprune.pruning_core.checkpoint import load_model
    from nnprune.measure.counting import count_parameters

    fast = [a for kv in FAST_GENERATION.split(",") for a in ("--task-option", kv)]
    out = tmp_path / "run"
    # Through the CLI, as a user runs it: `--set decoder_lambda_scale=2` reaches the config.
    with pytest.raises(SystemExit) as exc:
        main(["fine-prune", "cnn_dailymail", "--model", str(tiny_bart_dir), "--output-dir",
              str(out), "--data-dir", str(story_dir), "--max-steps", "3", "--batch-size", "2",
              "--method", "hybrid-nt", "--max-seq-length", "64", "--learning-rate", "1e-3",
              "--set", "attention_block=8x8", "--set", "decoder_lambda_scale=2",
              "--max-eval-samples", "4", "--logging-steps", "1", "--save-steps", "100",
              "--json-file", str(tmp_path / "result.json"), *fast])
    assert exc.value.code in (0, None), capsys.readouterr().err
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["steps"] == 3 and result["main_metric"] == "rouge2"
    m = result["metrics"]
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert 0.0 <= m[key] <= 100.0, m
    assert 2 <= m["gen_len"] <= 12 and math.isfinite(m["eval_loss"]) and m["eval_loss"] > 0
    saved = json.loads((out / "nnprune_config.json").read_text())
    assert saved["pruning"]["decoder_lambda_scale"] == 2.0
    assert saved["pruning"]["attention_block"] == "8x8" and saved["task"] == "cnn_dailymail"
    assert "train 4 of 4 listed, validation 4 of 4 listed" in capsys.readouterr().err

    # count-params: encoder and decoder reported separately; the table fits 80 columns
    loaded = load_model(out)
    assert loaded.is_masked
    pc = count_parameters(loaded.model, seq_len=64)
    assert set(pc.by_stack) == {"encoder", "decoder"}
    assert pc.by_stack["encoder"][1] == 2 * (4 * 32 * 32 + 2 * 32 * 64)
    assert pc.by_stack["decoder"][1] == 2 * (8 * 32 * 32 + 2 * 32 * 64)
    assert pc.original == sum(v[1] for v in pc.by_stack.values())
    dec = next(lc for lc in pc.layers if lc.stack == "decoder")
    assert len(dec.matrices) == 10 and set(dec.heads) == {"self", "cross"}
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render_count_table(pc, f"{out} (masked)"))
    import nnprune.cli.count_params as cp

    monkeypatch.setattr(cp, "console", console)
    print_count_summary(pc)
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "cross" in text and "dec.1" in text
    assert "encoder linear weights:" in text and "decoder linear weights:" in text

    # `nnprune evaluate` path: a plain Trainer (no Seq2SeqTrainer) drives the generation
    ev = evaluate_checkpoint("cnn_dailymail", out, data_dir=story_dir, max_eval_samples=2,
                             batch_size=2, task_options=dict(kv.split("=") for kv in
                                                             FAST_GENERATION.split(",")))
    assert ev.kind == "masked" and ev.num_examples == 2 and ev.max_seq_length == 64
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"} <= set(ev.metrics)
