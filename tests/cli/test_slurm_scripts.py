"""``scripts/slurm``: the sbatch scripts pass shellcheck, print in dry-run exactly the torchrun
command they would run, and that command's nnprune options are accepted by the real CLI; the
accelerate config is one ``accelerate launch`` reads."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "scripts" / "slurm"
SCRIPTS = ["single-node.sbatch", "multi-node.sbatch"]
NNPRUNE_ARGS = ["fine-prune", "squad", "--model", "/m", "--method", "hybrid", "--output-dir", "/o"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any Slurm or script variables, plus ``extra``."""
    names = {"TASK", "METHOD", "MODEL", "OUT", "DATA_DIR", "EXTRA", "GPUS", "PORT", "DRY_RUN"}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("SLURM_")}
    env.update(extra)
    return env


def dry_run(script: str, **env: str) -> list[str]:
    """Run ``script`` with ``DRY_RUN=1``: it must exit 0 and print exactly one line."""
    res = subprocess.run(["bash", str(SLURM / script)], env=clean_env(DRY_RUN="1", **env),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout
    return shlex.split(lines[0])


def fake_scontrol(tmp_path: Path) -> str:
    """A PATH whose first folder has an ``scontrol`` printing the job's two node names."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text('#!/usr/bin/env bash\n'
                        '[[ "$1 $2 $3" == "show hostnames node[1-2]" ]] || exit 3\n'
                        'printf "node1\\nnode2\\n"\n')
    scontrol.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def parse_with_cli(args: list[str]) -> dict:
    """Parse nnprune arguments with the real ``nnprune`` command (unknown options fail)."""
    import typer

    from nnprune.cli.main import app

    group = typer.main.get_command(app)
    command = group.commands[args[0]]
    return command.make_context(args[0], list(args[1:])).params


def nnprune_part(cmd: list[str]) -> list[str]:
    i = cmd.index("-m")
    assert cmd[i + 1] == "nnprune"
    return cmd[i + 2:]


# ------------------------------------------------------------------------------- shellcheck


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    res = subprocess.run(["shellcheck", "--shell=bash", str(SLURM / script)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_strict_bash_with_sbatch_headers(script):
    text = (SLURM / script).read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    headers = {line.split("=")[0] for line in text.splitlines() if line.startswith("#SBATCH ")}
    assert {"#SBATCH --job-name", "#SBATCH --nodes", "#SBATCH --gpus-per-node",
            "#SBATCH --cpus-per-task", "#SBATCH --time", "#SBATCH --output"} <= headers


# ---------------------------------------------------------------------------------- dry-run


def test_single_node_dry_run_command():
    cmd = dry_run("single-node.sbatch", TASK="squad", METHOD="hybrid", MODEL="/m", OUT="/o",
                  GPUS="4")
    assert cmd == ["torchrun", "--standalone", "--nproc_per_node", "4", "-m", "nnprune",
                   *NNPRUNE_ARGS]
    params = parse_with_cli(nnprune_part(cmd))
    assert (params["task"], params["model"], params["method"]) == ("squad", "/m", "hybrid")
    assert params["output_dir"] == Path("/o")


def test_multi_node_dry_run_command(tmp_path):
    cmd = dry_run("multi-node.sbatch", TASK="squad", METHOD="hybrid", MODEL="/m", OUT="/o",
                  GPUS="4", SLURM_NNODES="2", SLURM_JOB_ID="7", SLURM_JOB_NODELIST="node[1-2]",
                  PATH=fake_scontrol(tmp_path))
    assert cmd == ["srun", "--nodes", "2", "--ntasks-per-node", "1", "--kill-on-bad-exit=1",
                   "torchrun", "--nnodes", "2", "--nproc_per_node", "4",
                   "--rdzv_backend", "c10d", "--rdzv_endpoint", "node1:29500", "--rdzv_id", "7",
                   "-m", "nnprune", *NNPRUNE_ARGS]
    parse_with_cli(nnprune_part(cmd))


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_run_without_slurm_uses_defaults(script):
    cmd = dry_run(script)
    args = nnprune_part(cmd)
    assert args == ["fine-prune", "sst2", "--model", "bert-base-uncased", "--method", "hybrid-nt",
                    "--output-dir", "runs/sst2-hybrid-nt"]
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4"
    if script == "multi-node.sbatch":
        assert cmd[cmd.index("--rdzv_endpoint") + 1] == "localhost:29500"
        assert cmd[cmd.index("--nnodes") + 1] == "2"
    parse_with_cli(args)


@pytest.mark.parametrize("script", SCRIPTS)
def test_data_dir_and_extra_options_reach_the_cli(script, tmp_path):
    data = tmp_path / "data dir"  # a space: the printed line quotes it
    cmd = dry_run(script, TASK="mnli", DATA_DIR=str(data), PATH=fake_scontrol(tmp_path),
                  SLURM_JOB_NODELIST="node[1-2]",
                  EXTRA="--max-steps 10  --target-density 0.4 --set alpha_ce=0.5")
    args = nnprune_part(cmd)
    assert args == ["fine-prune", "mnli", "--model", "bert-base-uncased", "--method", "hybrid-nt",
                    "--output-dir", "runs/mnli-hybrid-nt", "--data-dir", str(data),
                    "--max-steps", "10", "--target-density", "0.4", "--set", "alpha_ce=0.5"]
    params = parse_with_cli(args)
    assert params["data_dir"] == data and params["max_steps"] == 10
    assert params["target_density"] == 0.4 and list(params["set_"]) == ["alpha_ce=0.5"]


def test_the_cli_check_refuses_unknown_options():
    with pytest.raises(Exception, match="No such option: --bogus"):
        parse_with_cli([*NNPRUNE_ARGS, "--bogus", "1"])


def test_default_task_and_method_exist():
    from nnprune.pruning_core.methods import METHODS
    from nnprune.tasks import TASKS

    assert {"sst2", "squad"} <= set(TASKS.names())
    assert {"hybrid-nt", "hybrid"} <= set(METHODS.names())


# ------------------------------------------------------------------------------- accelerate


def test_accelerate_config_is_a_multi_gpu_cluster_config():
    import dataclasses

    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    raw = yaml.safe_load((SLURM / "accelerate.yaml").read_text())
    assert isinstance(raw, dict)
    assert set(raw) <= {f.name for f in dataclasses.fields(ClusterConfig)}  # known keys only
    config = ClusterConfig.from_yaml_file(str(SLURM / "accelerate.yaml"))
    assert config.distributed_type == "MULTI_GPU" and config.num_machines == 1
    assert config.num_processes > 1 and config.mixed_precision == "no"  # bf16 off


def test_accelerate_launch_reads_the_config():
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(SLURM / "accelerate.yaml"), "-m", "nnprune",
                              *NNPRUNE_ARGS])
    args, _, _ = _validate_launch_command(args)
    assert args.multi_gpu and args.num_processes == 4 and args.mixed_precision == "no"
    assert args.module and args.training_script == "nnprune"
    assert args.training_script_args == NNPRUNE_ARGS
    parse_with_cli(args.training_script_args)
