"""The public API (``import nnprune``): fine-pruning in a plain loop and in a stock ``Trainer``
through the callback, post-training pruning with the user's own loss, shrinking, measuring."""

from __future__ import annotations

import inspect
import pydoc
import random

import pytest
import torch

import nnprune
from tests.conftest import TOL, known_latency_table, stock_reload_diffs, tiny_bert, write_probe

WORDS = "good bad fine awful great poor nice dull fun sad".split()


def toy_batches(tokenizer, n: int = 64, batch_size: int = 16, seed: int = 0):
    rng = random.Random(seed)
    out = []
    for i in range(0, n, batch_size):
        texts = [" ".join(rng.choices(WORDS, k=6)) for _ in range(batch_size)]
        enc = tokenizer(texts, padding="max_length", max_length=16, truncation=True,
                        return_tensors="pt")
        labels = torch.tensor([int(t.count("good") + t.count("great") > 1) for t in texts])
        out.append({**enc, "labels": labels})
    return out


def train_plain(model, pruning, batches, steps: int) -> None:
    optimizer = torch.optim.AdamW(pruning.parameter_groups(lr=1e-3))
    model.train()
    for step in range(steps):
        pruning.step(step)
        loss = model(**batches[step % len(batches)]).loss + pruning.regularization_loss()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


# ------------------------------------------------------------------------------- the surface
def test_every_public_name_is_documented_with_an_example():
    text = pydoc.render_doc(nnprune, renderer=pydoc.plaintext)
    for name in nnprune.__all__[1:]:
        obj = getattr(nnprune, name)
        assert name in text
        assert "Example::" in (inspect.getdoc(obj) or ""), name


def test_import_nnprune_stays_light():
    import subprocess
    import sys

    code = "import sys, nnprune; print('torch' in sys.modules, len(nnprune.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", str(len(nnprune.__all__))]


def test_parameter_groups_give_the_scores_their_own_group():
    model = tiny_bert()
    pruning = nnprune.attach_masks(model, "hybrid-nt", target_density=0.5, total_steps=10)
    groups = pruning.parameter_groups(lr=1e-4, weight_decay=0.01)
    scores = {id(p) for p in pruning.score_parameters()}
    assert scores and groups[-1]["lr"] == pruning.config.mask_scores_learning_rate
    assert groups[-1]["weight_decay"] == 0.0 and {id(p) for p in groups[-1]["params"]} == scores
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)
    assert all(g["lr"] == 1e-4 for g in groups[:-1])
    assert len(pruning.lr_lambdas(lambda s: 0.5)) == len(groups)
    assert pruning.lr_lambdas(lambda s: 0.5)[-1](7) == 1.0


def test_bad_input_is_one_line(tmp_path):
    model = tiny_bert()
    with pytest.raises(nnprune.NNPruneError, match="known: .*hybrid-nt"):
        nnprune.attach_masks(model, "nope")
    with pytest.raises(nnprune.NNPruneError, match="hybrid-nt.*distillation_loss"):
        nnprune.attach_masks(model, "hybrid")
    with pytest.raises(nnprune.NNPruneError, match="total_steps"):
        nnprune.attach_masks(tiny_bert(), "movement").step(0)
    with pytest.raises(nnprune.NNPruneError, match="one target"):
        nnprune.prune(tiny_bert(), [], target_speedup=2, target_flops=0.5)


# ------------------------------------------------------------------------------- a plain loop
def test_plain_loop_reaches_the_density_and_compacts_to_the_masked_model(tokenizer, tmp_path):
    model = tiny_bert()
    batches = toy_batches(tokenizer)
    pruning = nnprune.attach_masks(model, "hybrid-nt", target_density=0.5, total_steps=30)
    train_plain(model, pruning, batches, 30)
    pruning.finalize()
    assert pruning.density() == pytest.approx(0.5, abs=0.02)
    masked = logits(model, batches[0])
    result = nnprune.compact(model, tokenizer=tokenizer)
    assert result.exact and result.report.changed
    assert (logits(result.model, batches[0]) - masked).abs().max() <= TOL
    counted = nnprune.count_parameters(result.model)
    assert counted.density == pytest.approx(pruning.density(), abs=0.02)
    assert nnprune.count_flops(result.model, seq_len=16).total < nnprune.count_flops(
        tiny_bert(), seq_len=16).total
    # what users ship: stock transformers reloads it (no nnprune in that process)
    out = tmp_path / "small"
    nnprune.save_pretrained(result.model, out, tokenizer=tokenizer)
    probe = {k: v for k, v in batches[0].items() if k != "labels"}
    write_probe(out, probe, {"logits": masked})
    diffs = stock_reload_diffs([(str(out), "AutoModelForSequenceClassification")], tmp_path)
    assert max(diffs.values()) <= TOL


def test_speed_target_in_a_plain_loop_meets_the_latency_table(tokenizer, tiny_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    table = known_latency_table(tiny_dir, tmp_path / "table.json")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    pruning = nnprune.attach_masks(model, "hybrid-nt", target_speedup=1.5, latency_table=table,
                                   total_steps=30)
    train_plain(model, pruning, toy_batches(tokenizer), 30)
    pruning.finalize()
    assert pruning.predicted_speedup() >= 1.5 * 0.99
    assert pruning.latency_table.model.max_speedup > 1.5


def test_detach_is_the_inverse_of_attach():
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nnprune.attach_masks(model, "struct", target_density=0.5, total_steps=5).detach(apply_masks=False)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


# ------------------------------------------------------------------------------- HF Trainer
def _dataset(tokenizer, n: int = 64):
    from datasets import Dataset

    rows = [b for b in toy_batches(tokenizer, n=n, batch_size=n)][0]
    return Dataset.from_dict({k: v.tolist() for k, v in rows.items()})


def _args(out, steps: int, **kw):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8,
                             learning_rate=1e-3, report_to=[], use_cpu=True, seed=0,
                             logging_steps=4, save_strategy="no", **kw)


def test_callback_in_a_stock_trainer_trains_what_nnprunes_trainer_trains(tokenizer, tmp_path):
    """The same run through a stock ``Trainer`` + callback (the scores in the callback's own
    optimizer) and through the commands' ``PruningTrainer`` (the scores in its optimizer, the
    callback in ``manage_optimizer=False``) ends with the same masks and weights."""
    from transformers import Trainer

    from nnprune.workflows.trainer import PruningTrainer

    ds = _dataset(tokenizer)
    model_a = tiny_bert()
    pruning = nnprune.attach_masks(model_a, "hybrid-nt", target_density=0.5)
    Trainer(model=model_a, args=_args(tmp_path / "a", 16), train_dataset=ds,
            callbacks=[pruning.trainer_callback()]).train()

    model_b = tiny_bert()
    own = nnprune.attach_masks(model_b, "hybrid-nt", target_density=0.5)
    PruningTrainer(model=model_b, args=_args(tmp_path / "b", 16), train_dataset=ds,
                   pruning=own).train()

    assert pruning.density() == pytest.approx(own.density(), abs=1e-6)
    a, b = model_a.state_dict(), model_b.state_dict()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-5
    moved = [float(p.detach().abs().max()) for p in pruning.score_parameters()]
    assert max(moved) > 0.01  # the scores were trained, at their own learning rate


def test_callback_run_killed_and_resumed_ends_where_an_unbroken_run_ends(tokenizer, tmp_path):
    from transformers import Trainer, TrainerCallback

    ds = _dataset(tokenizer)

    def run(out, stop_at=None, resume=False):
        model = tiny_bert()
        pruning = nnprune.attach_masks(model, "hybrid-nt", target_density=0.5)
        callbacks = [pruning.trainer_callback()]
        if stop_at is not None:
            class Kill(TrainerCallback):
                def on_save(self, args, state, control, **kw):
                    if state.global_step == stop_at:
                        control.should_training_stop = True
            callbacks.append(Kill())
        args = _args(out, 12)
        args.save_strategy, args.save_steps = "steps", 4
        Trainer(model=model, args=args, train_dataset=ds, callbacks=callbacks).train(
            resume_from_checkpoint=True if resume else None)
        return model, pruning

    unbroken, p1 = run(tmp_path / "unbroken")
    run(tmp_path / "resumed", stop_at=8)
    resumed, p2 = run(tmp_path / "resumed", resume=True)
    assert (tmp_path / "resumed" / "checkpoint-8" / "nnprune_scores_optimizer.pt").is_file()
    a, b = unbroken.state_dict(), resumed.state_dict()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-5
    assert p1.density() == pytest.approx(p2.density(), abs=1e-9)


# ------------------------------------------------------------------------------- post-training
def test_post_training_with_a_user_loss_keeps_what_the_model_loss_keeps(tokenizer):
    import torch.nn.functional as F

    batches = toy_batches(tokenizer, n=64)

    def my_loss(model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return F.cross_entropy(out.logits, batch["targets"])

    own = [{**{k: v for k, v in b.items() if k != "labels"}, "targets": b["labels"]} for b in batches]
    a = nnprune.prune(tiny_bert(), batches, target_flops=0.5)
    b = nnprune.prune(tiny_bert(), own, target_flops=0.5, loss_fn=my_loss)
    assert a.kept == b.kept
    assert a.flops_after <= 0.5 * a.flops_before * 1.01 and a.predicted_by == "flops"
    assert a.exactness <= TOL and a.heads_kept < a.heads_total
    assert isinstance(a.to_dict()["seconds"], dict)
    with pytest.raises(nnprune.NNPruneError, match="at least 32"):
        nnprune.prune(tiny_bert(), batches[:1], target_flops=0.5)
    with pytest.raises(nnprune.NNPruneError, match="scalar"):
        nnprune.prune(tiny_bert(), own, target_flops=0.5, loss_fn=lambda m, b: torch.ones(2))


def test_refill_and_fill_train_a_compacted_model_from_a_teacher(tokenizer):
    batches = toy_batches(tokenizer, n=64)
    teacher = tiny_bert()
    model = nnprune.prune(tiny_bert(), batches, target_flops=0.6).model
    steps = []
    nnprune.fill(model, teacher, batches, steps=6, learning_rate=1e-3,
                 on_step=lambda s, loss: steps.append((s, loss)))
    assert [s for s, _ in steps] == list(range(1, 7))
    assert not model.training
    # with the user's loss, the forward it runs is the one distilled: one forward a step
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    nnprune.fill(model, teacher, batches, steps=3,
                 loss_fn=lambda m, b: m(**{k: v for k, v in b.items()}).loss)
    assert len(forwards) == 3


def test_measure_speed_of_a_module_against_its_dense_architecture(tokenizer):
    model = nnprune.prune(tiny_bert(), toy_batches(tokenizer), target_flops=0.5).model
    report = nnprune.measure_speed(model, batch_sizes=[1], seq_lens=[16], threads=1, warmup=1,
                                   iters=3)
    row = report.rows[0]
    assert row.batch_size == 1 and row.seq_len == 16 and row.speedup > 0
    assert row.theoretical_speedup > 1


def test_importance_init_orders_the_scores_and_a_saved_run_reloads_with_its_masks(tokenizer,
                                                                               tmp_path):
    batches = toy_batches(tokenizer)
    model = tiny_bert()
    with pytest.raises(nnprune.NNPruneError, match="importance_batches"):
        nnprune.attach_masks(tiny_bert(), "struct", overrides={"score_init": "importance"})
    pruning = nnprune.attach_masks(model, "struct", target_density=0.5, total_steps=10,
                                   overrides={"score_init": "importance"},
                                   importance_batches=batches)
    assert len({float(s) for p in pruning.score_parameters() for s in p.detach().flatten()}) > 2
    train_plain(model, pruning, batches, 10)
    pruning.finalize()
    pruning.save(tmp_path / "masked", tokenizer=tokenizer)
    again = nnprune.FinePruning.from_pretrained(tmp_path / "masked")
    assert again.density() == pytest.approx(pruning.density())
    assert (logits(again.model, batches[0]) - logits(model, batches[0])).abs().max() <= TOL
    with pytest.raises(nnprune.NNPruneError, match="no masks"):
        nnprune.FinePruning.from_pretrained(nnprune.save_pretrained(tiny_bert(), tmp_path / "plain"))
