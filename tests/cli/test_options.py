"""Options declared once: flags derived from the option dataclasses, --config / --print-config, choices and
values checked before any data is read, hidden aliases, and a command line that starts without numpy or torch."""

from __future__ import annotations

import pytest
import torch

from hsicls.config import EvaluateOptions, MapOptions, PreprocessOptions, TrainOptions
from hsicls.errors import OptionError
from tests.conftest import one_error, run_cli

TRAIN = ("--model", "md2f-mamba", "--epochs", "2", "--patch-size", "5", "--batch-size", "32", "--device", "cpu")


def test_print_config_then_config_trains_the_same_model_bit_for_bit(prepared, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    r = run_cli("train", prepared, "-o", a, *TRAIN, "--lr", "0.003", "--model-opt", "fusion=add", "--print-config")
    assert r.exit_code == 0 and not a.exists(), r.stderr
    cfg = tmp_path / "run.toml"
    cfg.write_text(r.stdout)
    assert "[train]" in r.stdout and "lr = 0.003" in r.stdout and 'fusion = "add"' in r.stdout
    assert run_cli("train", prepared, "-o", a, *TRAIN, "--lr", "0.003", "--model-opt", "fusion=add").exit_code == 0
    r = run_cli("train", "--model", "md2f-mamba", prepared, "-o", b, "--config", cfg)
    assert r.exit_code == 0, r.stderr
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert sa["model"] == sb["model"] and sa["training"]["config"] == sb["training"]["config"]
    assert all(torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"])


def test_a_flag_overrides_the_file(prepared, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nepochs = 7\nlr_schedule = "cosine"\npatch-size = 5\n')
    r = run_cli(
        "train", "--model", "md2f-mamba", prepared, "-o", tmp_path / "m.pt", "--config", cfg, "--epochs", "3", "--print-config"
    )
    assert r.exit_code == 0, r.stderr
    assert "epochs = 3" in r.stdout and 'lr_schedule = "cosine"' in r.stdout and "patch_size = 5" in r.stdout


@pytest.mark.parametrize(
    "cmd",
    [
        ("preprocess", "s.tif", "-l", "l.tif", "-o", "p.h5"),
        ("train", "p.h5", "-o", "m.pt"),
        ("evaluate", "m.pt", "p.h5"),
        ("predict-map", "s.tif", "-m", "m.pt", "-o", "map.tif"),
    ],
)
def test_print_config_on_every_stage_command_round_trips(cmd, tmp_path):
    r = run_cli(*cmd, "--print-config")
    assert r.exit_code == 0, r.stderr
    cfg = tmp_path / "x.toml"
    cfg.write_text(r.stdout)
    r2 = run_cli(*cmd, "--config", cfg, "--print-config")
    assert r2.exit_code == 0 and r2.stdout == r.stdout


def test_unknown_key_in_the_config_file_is_named(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepoch = 3\n")
    one_error(run_cli("train", "--model", "md2f-mamba", "p.h5", "-o", "m.pt", "--config", cfg), "c.toml", "epoch")
    cfg.write_text("[train\n")
    one_error(run_cli("train", "--model", "md2f-mamba", "p.h5", "-o", "m.pt", "--config", cfg), "c.toml", "TOML")


def test_invalid_choice_is_refused_at_parse_time_with_the_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    r = run_cli("train", "--model", "md2f-mamba", tmp_path / "none.h5", "-o", tmp_path / "m.pt", "--lr-schedule", "linear")
    line = one_error(r, "--lr-schedule")
    assert r.exit_code == 2 and all(c in line for c in ("constant", "cosine", "step"))
    assert "[constant|cosine|step]" in run_cli("train", "--help").stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (("--lr", "inf"), "--lr"),
        (("--lr", "0"), "--lr"),
        (("--patch-size", "4"), "odd"),
        (("--epochs", "0"), "--epochs"),
        (("--ema", "1"), "--ema"),
        (("--batch-size", "1"), "--batch-size"),
    ],
)
def test_validate_refuses_bad_values_before_reading_any_data(args, needle, tmp_path):
    r = run_cli("train", "--model", "md2f-mamba", tmp_path / "does-not-exist.h5", "-o", tmp_path / "m.pt", *args)
    assert r.exit_code == 2
    one_error(r, needle)


def test_options_validate_in_python_too():
    with pytest.raises(OptionError, match="--train-count"):
        PreprocessOptions(split="count").validate()
    with pytest.raises(ValueError, match="--window"):
        MapOptions(window=8).validate()
    with pytest.raises(OptionError, match="one of auto, fp32, bf16"):
        EvaluateOptions(precision="fp16").validate()
    assert TrainOptions().validate().to_record()["lr"] == 0.002


def test_hidden_alias_is_accepted_but_not_shown():
    r = run_cli("model-info", "--model", "md2f-mamba", "--patch", "7", "--json")
    assert r.exit_code == 0, r.stderr
    assert "--patch-size" in run_cli("model-info", "--help").stdout
    assert "--patch " not in run_cli("model-info", "--help").stdout
    one_error(run_cli("model-info", "--patch-size", "4"), "odd")
    one_error(run_cli("model-info", "--classes", "0"), "--classes")


def test_every_cli_option_of_a_stage_is_a_declared_field():
    """The stage commands' option flags are exactly the declared fields plus the command-level ones."""
    from typer.main import get_command

    from hsicls.cli.main import app

    cmd = get_command(app)
    for name, cls in (("train", TrainOptions), ("evaluate", EvaluateOptions), ("predict-map", MapOptions)):
        names = {p.name for p in cmd.commands[name].params}
        declared = {f.name for f, spec, _ in cls.declared() if spec.cli}
        assert declared <= names, declared - names


def test_the_cli_starts_without_numpy_or_torch():
    """The command line (its options, the split protocols' declarations included) loads before any array library:
    --help and usage errors stay quick."""
    import subprocess
    import sys

    code = "import sys, hsicls.cli.main; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
