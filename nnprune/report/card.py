"""A Hugging Face model card (``README.md``) for a checkpoint nnprune wrote, with its pictures.

The card is built from what the checkpoint records (its run record,
:class:`~nnprune.pruning_core.run_record.RunConfig`: task, base model, pruning config, training
options, results, and the stages of filled models) and what its weights show (parameter counts, heads and FFN dimensions kept, per layer), plus, when given,
a ``nnprune speed --json`` file (measured speed) and a ``nnprune evaluate --json`` file:

- YAML metadata: ``base_model``, ``pipeline_tag``, ``datasets``, ``metrics``, ``model-index``
  (metric values), ``tags`` and ``library_name``;
- the results: the metric against the dense teacher's when it is a local folder with its results,
  density, compression, heads and FFN dimensions kept per layer, estimated and measured speed;
- the pictures of :mod:`nnprune.report.plots`;
- how it was pruned, and the commands that reproduce it (rebuilt from the recorded options).

The card carries :data:`MARKER`. A ``README.md`` without it was not written by nnprune and is never
replaced unless asked (``overwrite``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_write_text
from nnprune.measure.latency import LatencySetting
from nnprune.pruning_core.config import PruningConfig, RegularizationKind
from nnprune.pruning_core.methods import METHODS
from nnprune.pruning_core.run_record import (BeforePruning, CommandOptions, FinePruneResult,
                                             RunConfig, RunResults, Stage, read_config,
                                             read_results)
from nnprune.settings import LATENCY_OPTION_PREFIX, TrainingOptions, option_flag

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
MARKER = "<!-- nnprune:model-card -->"
IMAGES = {"pattern": "nnprune_pattern.png", "heads": "nnprune_heads.png", "ffn": "nnprune_ffn.png"}
TAGS = ["nnprune", "pruning", "movement-pruning"]


@dataclass(frozen=True)
class TaskCard:
    pipeline_tag: str
    task_name: str
    dataset: Optional[str]  # hub id; None: the task has no fixed dataset (generic tasks)
    config: Optional[str]
    dataset_name: str
    split: str


TASK_CARDS = {
    "sst2": TaskCard("text-classification", "Text Classification", "nyu-mll/glue", "sst2",
                     "GLUE SST-2", "validation"),
    "mrpc": TaskCard("text-classification", "Text Classification", "nyu-mll/glue", "mrpc",
                     "GLUE MRPC", "validation"),
    "qqp": TaskCard("text-classification", "Text Classification", "nyu-mll/glue", "qqp",
                    "GLUE QQP", "validation"),
    "mnli": TaskCard("text-classification", "Text Classification", "nyu-mll/glue", "mnli",
                     "GLUE MNLI", "validation_matched"),
    "squad": TaskCard("question-answering", "Question Answering", "rajpurkar/squad", None,
                      "SQuAD v1.1", "validation"),
    "squad_v2": TaskCard("question-answering", "Question Answering", "rajpurkar/squad_v2", None,
                         "SQuAD v2.0", "validation"),
    "cnn_dailymail": TaskCard("summarization", "Summarization", "abisee/cnn_dailymail", "3.0.0",
                              "CNN / DailyMail", "validation"),
    # the generic tasks read any data: their dataset is the run's (see task_card)
    "text-classification": TaskCard("text-classification", "Text Classification", None, None,
                                     "the evaluation data", "validation"),
    "token-classification": TaskCard("token-classification", "Token Classification", None, None,
                                      "the evaluation data", "validation"),
    "question-answering": TaskCard("question-answering", "Question Answering", None, None,
                                   "the evaluation data", "validation"),
    "summarization": TaskCard("summarization", "Summarization", None, None,
                              "the evaluation data", "validation"),
}
_AUTO_CLASSES = (("ForSequenceClassification", "AutoModelForSequenceClassification"),
                 ("ForQuestionAnswering", "AutoModelForQuestionAnswering"),
                 ("ForTokenClassification", "AutoModelForTokenClassification"),
                 ("ForConditionalGeneration", "AutoModelForSeq2SeqLM"))


@dataclass
class CardResult:
    """What :func:`write_card` wrote."""

    checkpoint: Path
    card: Path
    images: dict[str, Path]
    metadata: dict[str, Any]
    kind: str
    data: dict[str, Any] = field(default_factory=dict, repr=False)  # what each picture drew

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "card": str(self.card), "kind": self.kind,
                "images": {k: str(v) for k, v in self.images.items()}, "metadata": self.metadata}


# --------------------------------------------------------------------------- input files
def check_card_target(path: "str | Path", overwrite: bool = False) -> Path:
    """Refuse (one line) to replace a ``README.md`` that nnprune did not write."""
    path = Path(path)
    if path.is_dir():
        raise NNPruneError(f"{path} is a folder, not a model card file")
    if path.exists() and not overwrite:
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            raise NNPruneError(f"cannot read {path}: {exc}") from None
        if MARKER not in text:
            raise NNPruneError(f"{path} exists and was not written by nnprune; pass --overwrite "
                               "to replace it")
    return path


def read_json_file(path: "str | Path", option: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise NNPruneError(f"{option} {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NNPruneError(f"{option} {p} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise NNPruneError(f"{option} {p} must hold a JSON object")
    return data


def read_speed(path: "str | Path") -> dict[str, Any]:
    """A ``nnprune speed --json`` file: rows with batch_size, seq_len, baseline_ms, model_ms,
    speedup."""
    data = read_json_file(path, "--speed")
    rows = data.get("rows")
    need = ("batch_size", "seq_len", "baseline_ms", "model_ms", "speedup")
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and all(k in r for k in need) for r in rows):
        raise NNPruneError(f"--speed {path} is not a `nnprune speed --json` file: it needs rows "
                           f"with {', '.join(need)}")
    return data


def read_evaluation(path: "str | Path") -> dict[str, Any]:
    """A ``nnprune evaluate --json`` file: task, metrics, main_metric, ..."""
    data = read_json_file(path, "--eval")
    if not isinstance(data.get("metrics"), dict) or not data["metrics"]:
        raise NNPruneError(f"--eval {path} is not a `nnprune evaluate --json` file: it has no "
                           "metrics")
    return data


def teacher_results(teacher: Optional[str]) -> Optional[RunResults]:
    """The recorded results of a teacher that is a local folder (``nnprune_results.json``, else
    the results in its ``nnprune_config.json``) with the metrics of the teacher itself, or
    None."""
    if not teacher:
        return None
    folder = Path(teacher)
    if not folder.is_dir():
        return None

    def from_config(f: Path) -> Optional[RunResults]:
        record = read_config(f)
        return record.results if record is not None else None

    for read in (read_results, from_config):
        try:
            results = read(folder)
        except NNPruneError as exc:
            logger.warning("%s; the teacher's metric is left out", exc)
            continue
        if results is not None and not isinstance(results, BeforePruning):
            return results
    return None


# ------------------------------------------------------------------------------ helpers
def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:,.2f}"
    return str(v)


def _task_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric task metrics (no losses, timings, thresholds)."""
    skip = ("loss", "runtime", "per_second", "epoch", "thresh", "num_")
    return {k: float(v) for k, v in metrics.items()
            if _num(v) and not any(s in k for s in skip)}


def _metric_title(name: str) -> str:
    return {"f1": "F1", "exact_match": "Exact match", "exact": "Exact match",
            "accuracy": "Accuracy"}.get(name, name.replace("_", " ").capitalize())


def _metric_type(name: str) -> str:
    for base in ("accuracy", "exact_match", "f1", "rouge1", "rouge2", "rougeL", "rougeLsum"):
        if name == base or name.endswith("_" + base):
            return base
    return name


def is_hub_id(name: Optional[str]) -> bool:
    """Whether ``name`` looks like a hub model id (``org/name``) and is no local folder."""
    return bool(name) and bool(re.fullmatch(r"[\w.-]+/[\w.-]+", str(name))) \
        and not Path(str(name)).exists()


def _model_ref(name: Optional[str]) -> str:
    """A model named for readers of the card: a hub id as a link; a local folder by its name
    only (the author's disk layout means nothing on the Hub)."""
    if not name:
        return "an unrecorded model"
    if is_hub_id(name):
        return f"[{name}](https://huggingface.co/{name})"
    return f"`{Path(str(name)).name or name}` (a local folder)"


def _local_name(path: Any) -> str:
    """A local file or folder by its name alone (as :func:`_model_ref` names models)."""
    return Path(str(path)).name or str(path)


def hub_base_model(name: Optional[str], _depth: int = 0) -> tuple[Optional[str], bool]:
    """``(hub id, direct)`` of the model a checkpoint was made from (``name``: the recorded
    ``base_model``): ``name`` itself when it is a hub id (``direct``); else, for a local folder,
    the hub id it knows: its config's ``_name_or_path`` when that is one, else the hub id of the
    model its own run record was made from (a dense fine-tune of a hub model); ``(None, False)``
    when none is known."""
    if not name:
        return None, False
    if is_hub_id(name):
        return str(name), True
    folder = Path(str(name))
    if _depth > 8 or not (folder / "config.json").is_file():
        return None, False
    try:
        known = json.loads((folder / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        known = None
    if isinstance(known, str) and is_hub_id(known):
        return known, False
    try:
        record = read_config(folder)
    except NNPruneError:
        return None, False
    if record is not None and record.base_model and record.base_model != str(name):
        return hub_base_model(record.base_model, _depth + 1)[0], False
    return None, False


def _q(v: Any) -> str:
    return shlex.quote(str(v))


def _arg(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return _q(v)


def _wrap_command(words: list[str], width: int = 96) -> str:
    """One shell command over several lines; an option stays on the line of its value."""
    pairs: list[str] = []
    for w in words:
        if pairs and pairs[-1].startswith("--") and " " not in pairs[-1] and not w.startswith("--"):
            pairs[-1] += " " + w
        else:
            pairs.append(w)
    lines, line = [], ""
    for w in pairs:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line + " \\")
            line = "    " + w
        else:
            line = f"{line} {w}" if line else w
    lines.append(line)
    return "\n".join(lines)


def _training_args(record: CommandOptions) -> list[str]:
    """The recorded training options that change the result (as their declarations say), with
    their flags."""
    out: list[str] = []
    for name in TrainingOptions.result_options():
        v = record.value(name)
        if v is None or (name == "epochs" and record.value("max_steps") is not None):
            continue
        out += [TrainingOptions.flag(name), _arg(v)]
    for k, v in sorted(record.task_options.items()):
        out += ["--task-option", _q(f"{k}={v}")]
    return out


def _latency_args(record: CommandOptions) -> list[str]:
    """``--target-speedup`` and the ``--latency-*`` setting it was measured at, if recorded."""
    if record.value("target_speedup") is None:
        return []
    out = ["--target-speedup", _arg(record.value("target_speedup"))]
    defaults = {f.name: f.default for f in fields(LatencySetting)}
    for k, v in (record.value("latency") or {}).items():
        if v is not None and defaults.get(k) != v:
            out += [option_flag(k, LATENCY_OPTION_PREFIX), _arg(v)]
    if record.value("latency_table"):
        out += ["--latency-table", _q(record.value("latency_table"))]
    return out


def fine_prune_command(record: CommandOptions, task: Optional[str],
                       base_model: Optional[str], output_dir: Optional[str] = None) -> str:
    """``nnprune fine-prune ...`` from a recorded ``training`` entry of a fine-prune run."""
    words = ["nnprune", "fine-prune", _q(record.value("task") or task or "TASK"),
             "--model", _q(record.value("model") or base_model or "MODEL"),
             "--method", _q(record.value("method") or "METHOD")]
    if record.value("teacher"):
        words += ["--teacher", _q(record.value("teacher"))]
    if record.value("target_density") is not None:
        words += ["--target-density", _arg(record.value("target_density"))]
    words += _latency_args(record)
    if record.value("config_file"):
        words += ["--config", _q(record.value("config_file"))]
    for o in record.value("overrides") or []:
        words += ["--set", _q(o)]
    words += ["--output-dir", _q(output_dir or record.value("output_dir") or "OUTPUT")]
    words += _training_args(record)
    for name in ("fill_max_steps", "fill_epochs"):
        if record.value(name) is not None:
            words += [option_flag(name), _arg(record.value(name))]
            break
    return _wrap_command(words)


def fill_command(record: CommandOptions, task: Optional[str]) -> str:
    """``nnprune fill ...`` from the recorded ``training`` entry of a fill stage."""
    words = ["nnprune", "fill", _q(record.value("checkpoint") or "CHECKPOINT"),
             _q(record.value("task") or task or "TASK")]
    if record.value("teacher"):
        words += ["--teacher", _q(record.value("teacher"))]
    words += ["--output-dir", _q(record.value("output_dir") or "OUTPUT")]
    if record.value("reinit_std") is not None:
        words += ["--reinit-std", _arg(record.value("reinit_std"))]
    words += _latency_args(record)
    words += _training_args(record)
    return _wrap_command(words)


def prune_command(record: CommandOptions, task: Optional[str]) -> str:
    """``nnprune prune ...`` from the options ``prune`` recorded (``post_training.options``);
    defaults are left out."""
    words = ["nnprune", "prune", _q(record.value("checkpoint") or "CHECKPOINT"),
             _q(record.value("task") or task or "TASK"),
             "--output-dir", _q(record.value("output_dir") or "OUTPUT")]
    if record.value("target_flops") is not None:
        words += ["--target-flops", _arg(record.value("target_flops"))]
    words += _latency_args(record)
    for name, default in PRUNE_DEFAULTS.items():
        value = record.value(name)
        if value is None or value == default:
            continue
        if name == "width_depth":  # its off switch has a name of its own
            words.append("--heads-ffn-only")
        elif isinstance(value, bool):
            words.append(option_flag(name) if value else "--no-" + option_flag(name)[2:])
        else:
            words += [option_flag(name), _arg(value)]
    words += _training_args(record)
    return _wrap_command(words)


#: ``nnprune prune``'s own options the reproduce command repeats when they are not these
#: defaults (the command's declaration; ``tune`` None is the task's choice).
PRUNE_DEFAULTS: dict[str, Any] = {"calibration_samples": 2048, "tune_samples": 256,
                                  "rearrange": True, "tune": None, "then_fill": None,
                                  "width_depth": True, "hidden_size": None}


def _post_training_stage(stage: Any, checkpoint: Path) -> Optional[CommandOptions]:
    """The options of the ``nnprune prune`` run that made a fill output's first stage (its
    pruning method ``post-training``), read from that stage's folder (as recorded, else the
    ``prune`` folder inside the output); None for a stage fine-prune made, or one whose folder is
    gone."""
    if stage.stage is not Stage.PRUNE or stage.pruning is None or \
            stage.pruning.method != "post-training":
        return None
    for folder in (Path(stage.checkpoint) if stage.checkpoint else None, Path(checkpoint) / "prune"):
        if folder is None or not folder.is_dir():
            continue
        try:
            record = read_config(folder)
        except NNPruneError:
            continue
        if record is not None and record.post_training is not None:
            return record.post_training.options
    return None


def _is_fill_method(method: Optional[str]) -> bool:
    return bool(method) and method in METHODS and METHODS.get(method).fill


def reproduce_commands(record: RunConfig, checkpoint: Path,
                       bertarize: Optional[Mapping[str, Any]] = None) -> list[str]:
    """The commands that rebuild ``checkpoint`` from its recorded options (may be empty)."""
    task, base = record.task, record.base_model
    cmds: list[str] = []
    stages = list(record.stages)
    if record.auto is not None and record.auto.training.values:
        # fine-prune --method auto: one command made both stages, whichever route it chose
        cmds.append(fine_prune_command(record.auto.training, task, base))
    elif record.post_training is not None and record.post_training.options.values:
        cmds.append(prune_command(record.post_training.options, task))  # nnprune prune
    elif stages:
        first = stages[0].training
        pruned = _post_training_stage(stages[0], checkpoint)
        if pruned is not None:
            # nnprune prune: with --then-fill one command made both stages
            cmds.append(prune_command(pruned, task))
            stages = stages[2:] if pruned.value("then_fill") else stages[1:]
        elif stages[0].stage is Stage.PRUNE and first is not None and first.values:
            if _is_fill_method(first.value("method")) and len(stages) > 1:
                # fine-prune --method hybrid-filled: both stages in one command into OUTPUT.
                second = stages[1].training
                out = second.value("output_dir") if second is not None else None
                cmds.append(fine_prune_command(first, task, base, output_dir=out))
                stages = stages[2:]
            else:
                cmds.append(fine_prune_command(first, task, base))
                stages = stages[1:]
        for s in stages:
            if s.stage is Stage.FILL and s.training is not None and s.training.values:
                cmds.append(fill_command(s.training, task))
    elif record.training is not None and record.training.values:
        cmds.append(fine_prune_command(record.training, task, base))
    if record.bertarized_from:
        opts = dict(bertarize or {})
        words = ["nnprune", "bertarize", _q(record.bertarized_from), "--output", _q(checkpoint)]
        if record.compacted or opts.get("compact"):
            words.append("--compact")
        if opts.get("allow_inexact"):
            words.append("--allow-inexact")
        if opts.get("ffn_multiple") not in (None, 8):
            words += ["--ffn-multiple", _arg(opts["ffn_multiple"])]
        cmds.append(_wrap_command(words))
    return cmds


def _load_snippet(kind: str, architectures: list[str]) -> str:
    auto = "AutoModel"
    for suffix, cls in _AUTO_CLASSES:
        if any(a.endswith(suffix) for a in architectures):
            auto = cls
    if kind == "compacted":
        return ("```python\nimport nnprune\nmodel = nnprune.load_pretrained(\"PATH\")\n"
                "# or with transformers alone (the compacted layers' code ships with the model):\n"
                f"from transformers import {auto}\n"
                f"model = {auto}.from_pretrained(\"PATH\", trust_remote_code=True)\n```")
    if kind == "masked":
        return ("```python\nimport nnprune\n"
                "model = nnprune.load_pretrained(\"PATH\")  # masked layers, final masks\n"
                "model = nnprune.load_pretrained(\"PATH\", bake_masks=True)  # plain layers\n```\n\n"
                "This checkpoint keeps its mask scores: it needs nnprune to load, and it is not "
                "faster until compacted (`nnprune bertarize PATH --output OUT --compact`).")
    return (f"```python\nfrom transformers import {auto}\n"
            f"model = {auto}.from_pretrained(\"PATH\")\n```")


# ------------------------------------------------------------------------------- metadata
def task_card(record: RunConfig) -> Optional[TaskCard]:
    """The :data:`TASK_CARDS` entry of ``record``'s task (``None``: an unknown task). A generic
    task has no fixed dataset: a run of it on a hub dataset (``--task-option dataset=ID``, with
    ``dataset_config`` and ``validation_split``) names that one; a run on local files none."""
    task = record.task
    tc = TASK_CARDS.get(str(task)) if task else None
    if tc is None or tc.dataset is not None:
        return tc
    options = record.training.task_options if record.training is not None else {}
    dataset = str(options.get("dataset") or "").strip()
    if not _is_hub_dataset(dataset):
        return tc
    config = str(options.get("dataset_config") or "").strip() or None
    return replace(tc, dataset=dataset, config=config,
                   dataset_name=dataset + (f" ({config})" if config else ""),
                   split=str(options.get("validation_split") or tc.split).strip())


def _is_hub_dataset(name: str) -> bool:
    """Whether ``name`` looks like a hub dataset id (``imdb``, ``org/name``), not a local folder."""
    return bool(re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", name)) and not Path(name).exists()


def build_metadata(record: RunConfig, name: str, metrics: Mapping[str, float],
                   main_metric: Optional[str], local_data: Optional[str] = None) -> dict[str, Any]:
    """The card's YAML metadata (Hugging Face model card fields). ``local_data``: the local
    evaluation data, ``None`` for the hub's evaluation split, ``""`` when not known."""
    tc = task_card(record)
    meta: dict[str, Any] = {"library_name": "transformers"}
    hub = hub_base_model(record.base_model)[0]
    if hub is not None:  # the Hub expects a hub id; a local folder's path means nothing there
        meta["base_model"] = hub
    if tc:
        meta["pipeline_tag"] = tc.pipeline_tag
        if tc.dataset:
            meta["datasets"] = [tc.dataset]
    if metrics:
        ordered = sorted(metrics, key=lambda k: (k != main_metric, k))
        meta["metrics"] = list(dict.fromkeys(_metric_type(k) for k in ordered))
    meta["tags"] = list(TAGS)
    if metrics and tc and tc.dataset:  # the model index names results by a hub dataset
        dataset: dict[str, Any] = {"name": tc.dataset_name, "type": tc.dataset}
        if tc.config:
            dataset["config"] = tc.config
        if local_data:
            dataset["name"] += f" (local data: {_local_name(local_data)})"
        elif local_data is None:
            dataset["split"] = tc.split
        ordered = sorted(metrics, key=lambda k: (k != main_metric, k))
        meta["model-index"] = [{"name": name, "results": [{
            "task": {"type": tc.pipeline_tag, "name": tc.task_name},
            "dataset": dataset,
            "metrics": [{"type": _metric_type(k), "value": round(float(metrics[k]), 6),
                         "name": _metric_title(k)} for k in ordered]}]}]
    return meta


# ---------------------------------------------------------------------------------- card
def _pruning_summary(pruning: PruningConfig) -> list[str]:
    method = pruning.method
    lines = []
    if method == "dense" or not pruning.prunes:
        lines.append("- no pruning")
    elif method:
        summary = METHODS.get(method).summary if method in METHODS else None
        lines.append(f"- method: `{method}`" + (f" (preset: {summary})" if summary else ""))
    if pruning.prunes:
        lines.append(f"- binarizer: `{pruning.binarizer.value}`; blocks: attention "
                     f"`{pruning.attention_block}`, FFN `{pruning.ffn_block}`"
                     + ("; global topK" if pruning.global_topk else ""))
        if pruning.regularization is not RegularizationKind.NONE:
            lines.append(f"- regularization: `{pruning.regularization.value}`, lambda attention "
                         f"{_fmt(pruning.attention_lambda, 3)}, FFN "
                         f"{_fmt(pruning.ffn_lambda, 3)}")
        if pruning.target_density is not None:
            lines.append(f"- target density: {pruning.target_density}")
        if pruning.target_speedup is not None:
            lines.append(f"- target speedup: {pruning.target_speedup}x (masks cut in latency "
                         "units by a latency table measured on the training machine)")
        lines.append(f"- threshold schedule: {pruning.initial_threshold} -> "
                     f"{pruning.final_threshold} (cubic; warm-up "
                     f"{pruning.initial_warmup}, cool-down {pruning.final_warmup})")
    if pruning.teacher:
        lines.append(f"- distilled from {_model_ref(pruning.teacher)} (alpha teacher "
                     f"{pruning.alpha_teacher}, alpha task {pruning.alpha_ce}, "
                     f"temperature {pruning.temperature})")
    return lines


def _budget(training: CommandOptions) -> str:
    if not training.values:
        return ""
    parts = []
    steps, epochs = training.value("max_steps"), training.value("epochs")
    if steps is not None:
        parts.append(f"{steps} step{'s' if steps != 1 else ''}")
    elif epochs is not None:
        parts.append(f"{epochs} epochs")
    for key, label in (("batch_size", "batch"), ("max_seq_length", "sequence length"),
                       ("learning_rate", "learning rate"), ("warmup", "warm-up"),
                       ("seed", "seed")):
        v = training.value(key)
        if v is not None:
            parts.append(f"{label} {v:g}" if isinstance(v, float) else f"{label} {v}")
    data = training.value("data_dir") or training.value("train_file")
    parts.append(f"data `{_local_name(data)}`" if data else "data from the hub")
    return ", ".join(parts)


def _layer_table(pc: Any) -> list[str]:
    atts = sorted({a for lc in pc.layers for a in lc.heads}, key=lambda a: (a != "self", a))
    names: list[str] = []
    for lc in pc.layers:
        names += [n for n in lc.matrices if n not in names]
    stacks = {lc.stack for lc in pc.layers}
    head = (["layer"] + [("heads kept" if a == "self" and len(atts) == 1 else f"{a} heads kept")
                         for a in atts] + ["FFN dims kept"] + [f"{n} kept" for n in names])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lc in pc.layers:
        row = [(f"{lc.stack} {lc.layer}" if len(stacks) > 1 else str(lc.layer))
               + (" (removed)" if getattr(lc, "removed", False) else "")]
        row += [f"{lc.heads[a][0]}/{lc.heads[a][1]}" if a in lc.heads else "-" for a in atts]
        row.append(f"{lc.ffn_dims[0]}/{lc.ffn_dims[1]}")
        row += [f"{100 * lc.matrices[n][0] / lc.matrices[n][1]:.1f}%"
                if n in lc.matrices and lc.matrices[n][1] else "-" for n in names]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _width_depth_text(count: Any) -> str:
    """``, a hidden width of k/H, L'/L layers (removed: ...)`` for a model pruned in width or
    depth (issue 25); empty otherwise."""
    kept, dense = (list(getattr(count, "hidden_size", None) or []) + [0, 0])[:2]
    removed = [lc.layer for lc in count.layers if getattr(lc, "removed", False)]
    parts = [f"a hidden width of {kept}/{dense}"] if dense and kept < dense else []
    if removed:
        n = len(count.layers)
        parts.append(f"{n - len(removed)}/{n} layers (removed: {', '.join(map(str, removed))})")
    return "".join(f", {p}" for p in parts)


def _speed_section(speed: Mapping[str, Any]) -> list[str]:
    out = ["### Measured speed", ""]
    where = ", ".join(str(x) for x in (
        speed.get("runtime"), speed.get("device"), speed.get("dtype"),
        f"int8 ({speed['quantize']})" if speed.get("quantize") else None,
        f"{speed['threads']} thread(s)" if speed.get("threads") else None, speed.get("cpu"))
        if x)
    out.append(f"`nnprune speed` against {_model_ref(speed.get('baseline')) if speed.get('baseline') else 'the dense baseline'}"
               + (f" ({where})" if where else "") + "; median latency of interleaved runs after "
               "warm-up.")
    out += ["", "| batch x seq | dense ms | this model ms | speedup | FLOP speedup | efficiency |",
            "|---|---|---|---|---|---|"]
    for r in speed["rows"]:
        out.append(f"| {r['batch_size']} x {r['seq_len']} | {_fmt(float(r['baseline_ms']), 1)} | "
                   f"{_fmt(float(r['model_ms']), 1)} | **{float(r['speedup']):.2f}x** | "
                   + (f"{float(r['theoretical_speedup']):.2f}x" if _num(r.get("theoretical_speedup")) else "-")
                   + " | " + (f"{float(r['efficiency']):.2f}" if _num(r.get("efficiency")) else "-")
                   + " |")
    for r in speed.get("generate_rows") or []:
        if all(k in r for k in ("batch_size", "seq_len", "baseline_ms", "model_ms", "speedup")):
            out.append(f"| generate {r['batch_size']} x {r['seq_len']} | "
                       f"{_fmt(float(r['baseline_ms']), 1)} | {_fmt(float(r['model_ms']), 1)} | "
                       f"**{float(r['speedup']):.2f}x** | - | - |")
    tm = speed.get("task_metrics")
    if isinstance(tm, dict) and tm:
        out.append("")
        for k, v in tm.items():
            if isinstance(v, dict):
                vals = ", ".join(f"{m} {_fmt(x)}" for m, x in _task_metrics(v).items())
                out.append(f"- {k}: {vals}")
    return out + [""]


def _eval_section(ev: Mapping[str, Any]) -> list[str]:
    out = ["### Evaluation", ""]
    desc = [f"task `{ev['task']}`" if ev.get("task") else None,
            f"{ev['num_examples']:,} examples" if _num(ev.get("num_examples")) else None,
            f"sequence length {ev['max_seq_length']}" if ev.get("max_seq_length") else None,
            f"checkpoint {_model_ref(ev['checkpoint'])}" if ev.get("checkpoint") else None]
    out.append("`nnprune evaluate`: " + ", ".join(d for d in desc if d) + ".")
    out += ["", "| metric | value |", "|---|---|"]
    main = ev.get("main_metric")
    for k, v in sorted(_task_metrics(ev["metrics"]).items(), key=lambda kv: (kv[0] != main, kv[0])):
        out.append(f"| {k}{' (main)' if k == main else ''} | {_fmt(v)} |")
    return out + [""]


def build_card(*, record: RunConfig, checkpoint: Path, name: str, kind: str, count: Any,
               architectures: list[str], images: Mapping[str, str],
               speed: Optional[Mapping[str, Any]] = None,
               evaluation: Optional[Mapping[str, Any]] = None,
               bertarize: Optional[Mapping[str, Any]] = None,
               load_path: Optional[str] = None) -> tuple[str, dict[str, Any]]:
    """The card's text and its metadata. ``record``: the checkpoint's run record (an empty one
    for a checkpoint without); ``count``: a :class:`~nnprune.measure.counting.ParamCount` of the
    checkpoint; ``images``: picture name -> file name relative to the card; ``load_path``: the
    folder the "Use it" snippet loads, the one holding the weights (default: ``name``)."""
    import yaml

    results = record.results
    pruning = record.pruning
    training = record.training
    stages = record.stages
    task = record.task or (evaluation or {}).get("task")
    main = (results.main_metric if results is not None else None) or (
        evaluation or {}).get("main_metric")
    metrics = _task_metrics(results.metrics if results is not None else {})
    source = "recorded at the end of training"
    if evaluation and (not task or evaluation.get("task") in (None, task)):
        metrics = _task_metrics(evaluation["metrics"]) or metrics
        main = evaluation.get("main_metric") or main
        source = "from `nnprune evaluate`"
    # Where the metrics were measured: None = the hub's split; "" = not recorded (evaluate
    # does not record its data source); else the local file / folder training evaluated on.
    local: Optional[str] = ""
    if source.startswith("recorded"):
        local = next((str(training.value(k)) for k in ("validation_file", "data_dir")
                      if training is not None and training.value(k)), None)
    with_task = replace(record, task=task)
    meta = build_metadata(with_task, name, metrics, main, local)

    teacher = record.teacher()
    t_results = teacher_results(teacher)
    (heads_k, heads_o), (ffn_k, ffn_o) = count.unit_totals()
    shown = stages[0].pruning if stages else pruning  # the pruning stage's config
    method = shown.method if shown is not None else None

    L: list[str] = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(),
                    "---", MARKER,
                    "<!-- Written by `nnprune report`; nnprune rewrites this file. Delete the "
                    "line above to keep your edits from being replaced. -->", "", f"# {name}", ""]
    what = f"A {count.model_type} model"
    if task:
        what += f" for `{task}`"
    if method and method != "dense":
        what += f", fine-pruned with nnprune's `{method}` method"
    elif method == "dense":
        what += ", fine-tuned without pruning (a dense baseline)"
    hub, direct = hub_base_model(record.base_model)
    if hub is not None:
        what += f" from {_model_ref(hub)}" if direct else f" from a local model derived from {_model_ref(hub)}"
    elif record.base_model:
        what += " from a local model"
    if record.is_filled:
        what += ", then compacted and fine-tuned again with its zeros re-initialised (Hybrid Filled)"
    what += "."
    kinds = {"masked": "a masked checkpoint (mask scores kept; not compacted)",
             "compacted": "compacted: the pruned heads and FFN dimensions are removed for real",
             "plain": "a plain transformers checkpoint (pruned weights are zeros)"}
    L += [what, f"It keeps {100 * count.density:.1f}% of the encoder{'/decoder' if len(count.by_stack) > 1 else ''}"
          f" linear weights ({count.compression:.2f}x compression), {heads_k}/{heads_o} attention "
          f"heads and {ffn_k:,}/{ffn_o:,} FFN dimensions{_width_depth_text(count)}; the checkpoint "
          f"is {kinds.get(kind, kind)}.", ""]

    # -------- results
    L += ["## Results", ""]
    if metrics:
        tc = task_card(with_task)
        L.append(f"Metrics on {tc.dataset_name if tc else task} "
                 f"({source}" + (f"; data `{_local_name(local)}`" if local else "") + ").")
        L.append("")
        t_metrics = _task_metrics(t_results.metrics if t_results is not None else {})
        # a teacher that records no density (post-training pruning) counts as dense
        t_dense = t_results is not None and (not isinstance(t_results, FinePruneResult)
                                             or not _num(t_results.density)
                                             or float(t_results.density) >= 0.999)
        t_label = "dense teacher" if t_dense else "teacher"
        prune_metrics = {}
        if stages and stages[0].results is not None:
            prune_metrics = _task_metrics(stages[0].results.metrics)
        cols = ["metric", "this model"]
        if prune_metrics:
            cols.append("after pruning, before fill")
        if t_metrics:
            cols += [t_label, "retained"]
        L += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for k in sorted(metrics, key=lambda k: (k != main, k)):
            row = [f"**{k}**" if k == main else k, _fmt(metrics[k])]
            if prune_metrics:
                row.append(_fmt(prune_metrics[k]) if k in prune_metrics else "-")
            if t_metrics:
                tv = t_metrics.get(k)
                row += [_fmt(tv) if tv is not None else "-",
                        f"{100 * metrics[k] / tv:.1f}%" if tv else "-"]
            L.append("| " + " | ".join(row) + " |")
        if teacher and not t_metrics:
            L += ["", f"The dense teacher {_model_ref(teacher)} records no results here; its "
                      "metric is not shown."]
        L.append("")
    else:
        L += ["No metric recorded (evaluate it with `nnprune evaluate TASK PATH --json-file FILE` "
              "and pass `--eval FILE` to `nnprune report`).", ""]
    L += ["| | |", "|---|---|",
          f"| linear weights kept | {count.remaining:,} / {count.original:,} |",
          f"| density | {count.density:.4f} |",
          f"| compression | {count.compression:.2f}x |",
          f"| attention heads kept | {heads_k} / {heads_o} |",
          f"| FFN dimensions kept | {ffn_k:,} / {ffn_o:,} |",
          f"| estimated speedup (FLOPs, sequence {count.seq_len}) | {count.estimated_speedup:.2f}x |",
          ""]
    L += ["Counts are over the linear weights of the transformer layers (Q, K, V, attention output, "
          "FFN in and out), biases excluded, as in Sanh et al. 2020 and Lagunas et al. 2021; the "
          "estimated speedup assumes the empty heads and FFN dimensions are removed.", ""]
    if speed:
        L += _speed_section(speed)
    if evaluation:
        L += _eval_section(evaluation)
    L += ["### Per layer", ""] + _layer_table(count) + [""]

    # -------- pictures
    L += ["## Pruning pattern", ""]
    captions = {"pattern": "Kept (blue) and pruned (white) weights of every linear matrix, per "
                           "layer; orange lines separate attention heads.",
                "heads": "Attention heads kept, per layer.",
                "ffn": "FFN dimensions kept per layer, against the original size."}
    for key, fname in images.items():
        L += [f"![{captions.get(key, key)}]({fname})", ""]

    # -------- how
    L += ["## How it was pruned", ""]
    if stages:
        labels = {Stage.PRUNE: "fine-pruning", Stage.FILL: "fill (compact, re-initialise the "
                  "zeros left inside the kept heads and FFN dimensions, fine-tune with "
                  "distillation and no pruning)"}
        for i, s in enumerate(stages, 1):
            budget = s.training is not None and bool(s.training.values)
            L.append(f"{i}. **{labels[s.stage]}**" + (f" — {_budget(s.training)}"
                                                      if budget else ""))
            for line in _pruning_summary(s.pruning) if s.pruning is not None else []:
                L.append("   " + line)
            comp = s.compaction
            if isinstance(comp, dict) and "heads_removed" in comp:
                L.append(f"   - compaction removed {comp['heads_removed']} heads and "
                         f"{comp.get('ffn_dims_removed', 0)} FFN dimensions")
    elif pruning is not None:
        L += _pruning_summary(pruning)
        if training is not None and training.values:
            L.append(f"- training: {_budget(training)}")
    else:
        L.append("No nnprune configuration is recorded with this checkpoint.")
    if record.bertarized_from:
        L.append(f"- masks baked in from `{record.bertarized_from}`"
                 + (" and empty heads / FFN dimensions removed (`bertarize --compact`)"
                    if record.compacted else " (`bertarize`)"))
    L.append("")
    shown = shown or pruning
    if shown is not None:
        L += ["<details><summary>Pruning configuration</summary>", "", "```json",
              json.dumps(shown.to_dict(), indent=2, sort_keys=True), "```", "", "</details>", ""]
    cmds = reproduce_commands(record, checkpoint, bertarize)
    if cmds:
        L += ["## Reproduce", "", "Rebuilt from the options recorded in `nnprune_config.json` "
              "(paths as they were on the machine that ran it):", "", "```bash"] + cmds + ["```", ""]
    L += ["## Use it", "", _load_snippet(kind, architectures).replace("PATH", load_path or name), "",
          "Made with nnprune: movement pruning (Sanh et al. 2020) and block movement pruning "
          "(Lagunas et al. 2021).", ""]
    return "\n".join(L), meta


def weights_path(checkpoint: "str | Path", output: "str | Path | None") -> str:
    """The folder the card's "Use it" snippet loads: the checkpoint, which holds the weights
    (``output``, a folder of the card and pictures alone, holds none). By its name when the card
    sits in it (the folder is what is shared) or when it was given as an absolute path (the
    author's disk layout means nothing to a reader); else as given, relative to where the
    command ran."""
    ckpt = Path(checkpoint)
    if output is None or Path(output).resolve() == ckpt.resolve() or ckpt.is_absolute():
        return ckpt.resolve().name or str(ckpt)
    return str(ckpt)


def write_card(checkpoint: "str | Path", output: "str | Path | None" = None, *,
               speed: "str | Path | Mapping[str, Any] | None" = None,
               evaluation: "str | Path | Mapping[str, Any] | None" = None,
               overwrite: bool = False, bertarize: Optional[Mapping[str, Any]] = None,
               seq_len: int = 128) -> CardResult:
    """Write ``README.md`` and the pictures for ``checkpoint`` into ``output`` (default: the
    checkpoint folder). Refuses to replace a ``README.md`` nnprune did not write unless
    ``overwrite``. ``speed`` / ``evaluation``: the JSON (file or dict) of ``nnprune speed`` /
    ``nnprune evaluate``; ``bertarize``: the bertarize options when known (compact,
    allow_inexact, ffn_multiple)."""
    from nnprune.measure.counting import count_parameters
    from nnprune.pruning_core.checkpoint import check_dir, load_model
    from nnprune.pruning_core.structure import analyze_structure
    from nnprune.report.plots import ffn_plot, heads_plot, pattern_plot

    ckpt = check_dir(checkpoint)
    out = Path(output) if output is not None else ckpt
    if out.exists() and not out.is_dir():
        raise NNPruneError(f"--output {out} is not a folder")
    card = check_card_target(out / CARD_FILE, overwrite)
    if speed is not None and not isinstance(speed, Mapping):
        speed = read_speed(speed)
    if evaluation is not None and not isinstance(evaluation, Mapping):
        evaluation = read_evaluation(evaluation)
    loaded = load_model(ckpt)
    model, kind = loaded.model, loaded.kind.value
    structure = analyze_structure(model)
    count = count_parameters(model, seq_len=seq_len)
    out.mkdir(parents=True, exist_ok=True)
    data = {"pattern": pattern_plot(model, out / IMAGES["pattern"], structure=structure),
            "heads": heads_plot(model, out / IMAGES["heads"], structure=structure),
            "ffn": ffn_plot(model, out / IMAGES["ffn"], structure=structure)}
    name = (out.resolve().name if output is not None else ckpt.resolve().name) or "model"
    text, meta = build_card(record=loaded.record or RunConfig(), checkpoint=ckpt, name=name,
                            kind=kind, count=count,
                            architectures=list(getattr(model.config, "architectures", None) or []),
                            images=IMAGES, speed=speed, evaluation=evaluation, bertarize=bertarize,
                            load_path=weights_path(checkpoint, output))
    check_card_target(card, overwrite)  # again: it may have appeared while drawing
    atomic_write_text(card, text)
    logger.debug("wrote %s", card)
    return CardResult(ckpt, card, {k: out / v for k, v in IMAGES.items()}, meta, kind, data)


__all__ = ["CARD_FILE", "IMAGES", "MARKER", "CardResult", "TASK_CARDS", "build_card", "task_card",
           "build_metadata", "check_card_target", "fill_command", "fine_prune_command",
           "read_evaluation", "read_speed", "reproduce_commands", "teacher_results", "write_card"]
