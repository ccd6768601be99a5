"""[speed] --precision auto on the CPU: bf16 only where native, classes always equal to fp32's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from hsicls.artifacts.bundle import load_bundle
from hsicls.engine import inference, runtime
from hsicls.engine.inference import Runner, bf16_error
from tests.conftest import run_cli


@pytest.mark.parametrize(
    "native, error, precision, expected",
    [
        (False, 0.01, "auto", "fp32"),  # no native bf16: fp32
        (True, None, "auto", "fp32"),  # a bundle from before the bf16 check: fp32
        (True, 0.01, "auto", "bf16-checked"),
        (False, 0.01, "bf16", "bf16"),  # asked for: no check
        (True, 0.01, "fp32", "fp32"),
    ],
)
def test_auto_uses_bf16_only_where_native(monkeypatch, native, error, precision, expected):
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: native)
    assert Runner.resolve("cpu", precision, bf16_error=error).precision == expected


def test_cpu_flags_are_read():
    flags = runtime.cpu_flags()
    assert isinstance(flags, set)
    assert runtime.native_bf16_cpu() == bool(flags & {"amx_bf16", "avx512_bf16"})


def _near_tie_model(channels: int, patch: int) -> torch.nn.Module:
    """Three classes, two of them nearly identical: most pixels are near-ties between them."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(channels * patch * patch, 3)
    with torch.no_grad():
        lin.weight[1] = lin.weight[0] * (1 + 1e-3)
        lin.bias[1] = lin.bias[0]
    return torch.nn.Sequential(torch.nn.Flatten(), lin).eval()


def test_recheck_makes_near_ties_equal_fp32():
    patch, c = 3, 8
    padded = torch.randn(c, 40 + patch - 1, 40 + patch - 1)
    rows, cols = (t.reshape(-1) for t in torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij"))
    model = _near_tie_model(c, patch)
    err = bf16_error(model, padded, rows[:400], cols[:400], patch)  # "validation" pixels: the first 10 rows
    fp32 = Runner(torch.device("cpu"), False, 128).classes(model, padded, rows, cols, patch)
    plain = Runner(torch.device("cpu"), False, 128, "bf16").classes(model, padded, rows, cols, patch)
    checked_runner = Runner(torch.device("cpu"), False, 128, "bf16-checked", err)
    checked = checked_runner.classes(model, padded, rows, cols, patch)
    assert (plain != fp32).any(), "the scene was meant to have near-ties that bf16 gets wrong"
    assert torch.equal(checked, fp32)
    assert 0 < checked_runner.rechecked_fraction < 1


class _ShapeLog(torch.nn.Module):
    """Wraps a model and records the batch size of every fp32 forward pass."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.fp32_sizes = inner, []

    def forward(self, x):
        if x.dtype == torch.float32:
            self.fp32_sizes.append(x.shape[0])
        return self.inner(x)


def _near_tie_scene(side: int = 40, patch: int = 3, c: int = 8):
    padded = torch.randn(c, side + patch - 1, side + patch - 1, generator=torch.Generator().manual_seed(1))
    rows, cols = (t.reshape(-1) for t in torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"))
    return padded, rows, cols, patch, _near_tie_model(c, patch)


def test_pooled_recheck_runs_fixed_shapes_and_equals_fp32():
    """[speed-3] 1: the uncertain pixels of many batches are pooled and recomputed in fp32 in batches of a
    few fixed sizes (the batch size and its halves down to an eighth), never at the count one batch had."""
    padded, rows, cols, patch, inner = _near_tie_scene()
    err = bf16_error(inner, padded, rows[:400], cols[:400], patch)
    fp32 = Runner(torch.device("cpu"), False, 64).classes(inner, padded, rows, cols, patch)
    model = _ShapeLog(inner)
    runner = Runner(torch.device("cpu"), False, 64, "bf16-checked", err)
    checked = runner.classes(model, padded, rows, cols, patch)
    assert torch.equal(checked, fp32)
    assert model.fp32_sizes, "the near-tie scene was meant to need a re-check"
    assert set(model.fp32_sizes) <= {8, 16, 32, 64}
    assert sum(model.fp32_sizes) >= runner.stats["rechecked"] > 0
    assert model.fp32_sizes.count(64) >= len(model.fp32_sizes) - 1  # whole batches but for the last
    # logits come back in order, every pixel once, equal to fp32's classes batch by batch
    seen = []
    for sl, logits in Runner(torch.device("cpu"), False, 64, "bf16-checked", err).logits(inner, padded, rows, cols, patch):
        seen.append(sl.start)
        assert torch.equal(logits.argmax(1), fp32[sl])
    assert seen == list(range(0, rows.numel(), 64))


def test_auto_probe_picks_fp32_when_bf16_is_slower(monkeypatch):
    """[speed-3] 1: auto keeps bf16-checked only when a timed probe finds it faster (the probe mocked:
    the bf16 copy made slow, then fp32 made slow); the classes equal fp32's either way."""
    import time as _time

    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: True)
    padded, rows, cols, patch, model = _near_tie_scene()
    err = bf16_error(model, padded, rows[:400], cols[:400], patch)
    fp32 = Runner(torch.device("cpu"), False, 64).classes(model, padded, rows, cols, patch)
    for slow, expected in (("_bf16", "fp32"), ("_fp32", "bf16-checked")):
        original = getattr(Runner, slow)

        def sleepy(self, m, x, original=original):
            _time.sleep(0.02)
            return original(self, m, x)

        with monkeypatch.context() as mp:
            mp.setattr(Runner, slow, sleepy)
            runner = Runner.resolve("cpu", "auto", 64, err, job_pixels=rows.numel())
            assert runner.precision == "bf16-checked" and runner.precision_reason.startswith("pending")
            assert torch.equal(runner.classes(model, padded, rows, cols, patch), fp32)
        assert runner.precision == expected, runner.precision_reason
        assert runner.precision_reason.startswith("probe:") and "ms/batch" in runner.precision_reason


def test_auto_skips_the_probe_on_small_jobs(monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: True)
    small = Runner.resolve("cpu", "auto", 64, 0.01, job_pixels=64 * inference.PROBE_MIN_BATCHES - 1)
    assert small.precision == "fp32" and "too small" in small.precision_reason
    assert Runner.resolve("cpu", "auto", 64, 0.01, job_pixels=64 * inference.PROBE_MIN_BATCHES).precision == "bf16-checked"
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: False)
    assert "no native bf16" in Runner.resolve("cpu", "auto", 64, 0.01).precision_reason


def test_bf16_map_equals_fp32_map_on_sample_scene(monkeypatch, tiny_scene, prepared, bundle, tmp_path):
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: True)
    monkeypatch.setattr(inference, "PROBE_MIN_BATCHES", 0)  # the tiny scene is below the probe's size
    monkeypatch.setattr(inference, "PROBE_MARGIN", 1e9)  # and its probe keeps bf16-checked whatever the timings
    assert load_bundle(bundle).training["bf16_error"] > 0
    r32 = run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "a.tif", "--precision", "fp32")
    r16 = run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "b.tif", "--json")
    assert r32.exit_code == 0 and r16.exit_code == 0, r16.stderr
    summary = json.loads(r16.stdout)
    assert summary["precision"] == "bf16-checked" and summary["rechecked_fraction"] is not None
    assert summary["precision_reason"].startswith("probe:")
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(), b.read())
    ev = run_cli("evaluate", bundle, prepared, "--json")
    e32 = run_cli("evaluate", bundle, prepared, "--json", "--precision", "fp32")
    assert ev.exit_code == 0 and e32.exit_code == 0, ev.stderr
    a, b = json.loads(ev.stdout), json.loads(e32.stdout)
    assert a["precision"] == "bf16-checked" and b["precision"] == "fp32"
    assert a["confusion_matrix"] == b["confusion_matrix"]


def test_device_side_pca_equals_host_side():
    """[speed] 4: standardisation + PCA as one matrix product (the GPU path) equals the float64 host path to
    float32 rounding: |difference| <= 1e-4 x (1 + |value|), on the CPU here (the GPU runs the same code)."""
    from hsicls.artifacts.prepared import Preprocessing

    rng = np.random.default_rng(0)
    b, c = 48, 8
    comps = np.linalg.qr(rng.normal(size=(b, b)))[0][:c]
    prep = Preprocessing(rng.normal(500, 100, b), rng.uniform(5, 50, b), comps, rng.normal(0, 0.1, b))
    x = rng.normal(500, 120, (1000, b)).astype(np.float32)
    host = prep.apply(x)
    dev = prep.apply_torch(torch.from_numpy(x)).numpy()
    assert np.all(np.abs(dev - host) <= 1e-4 * (1 + np.abs(host)))
    none = Preprocessing(prep.mean, prep.std, np.zeros((0, b)), np.zeros(b))  # no PCA: standardisation only
    assert np.allclose(none.apply_torch(torch.from_numpy(x)).numpy(), none.apply(x), rtol=1e-5, atol=1e-4)


def _mock_compile(monkeypatch, tmp_path, fail: bool = False):
    """torch.compile replaced by a recorder (a real compilation takes a minute on 2 cores): identity, or a failure."""
    calls = []

    def fake(net, **kw):
        calls.append(kw)
        if fail:
            raise RuntimeError("InductorError: no working C compiler")
        return lambda x: net(x) + 1e-7 * torch.sin(x.flatten(1)[:, :1].float()).to(net(x).dtype)  # eager, rounded a little

    monkeypatch.setattr(torch, "compile", fake)
    monkeypatch.setenv("HSICLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    return calls


def test_compile_on_keeps_fp32_classes_with_one_shape(monkeypatch, tmp_path):
    """[speed-3] 2: --compile on compiles once for one batch shape (smaller batches padded), the compiled
    logits' near-ties are recomputed eagerly, so the classes equal eager fp32's; the cache folder is 0700."""
    import os
    import stat

    calls = _mock_compile(monkeypatch, tmp_path)
    padded, rows, cols, patch, model = _near_tie_scene()
    fp32 = Runner(torch.device("cpu"), False, 64).classes(model, padded, rows, cols, patch)
    runner = Runner.resolve("cpu", "fp32", 64, None, job_pixels=rows.numel(), compile="on")
    assert torch.equal(runner.classes(model, padded, rows, cols, patch), fp32)
    assert runner.compiled and "compiled (fp32)" in runner.compile_reason and len(calls) == 1
    assert calls[0].get("dynamic") is False
    d = tmp_path / "cache" / "inductor"
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700 and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(d)
    assert (tmp_path / "cache" / "compile-times.json").exists()  # a second run knows what compiling costs


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch, tmp_path, capsys):
    _mock_compile(monkeypatch, tmp_path, fail=True)
    padded, rows, cols, patch, model = _near_tie_scene()
    fp32 = Runner(torch.device("cpu"), False, 64).classes(model, padded, rows, cols, patch)
    runner = Runner.resolve("cpu", "fp32", 64, None, job_pixels=rows.numel(), compile="on")
    assert torch.equal(runner.classes(model, padded, rows, cols, patch), fp32)
    assert not runner.compiled and "failed" in runner.compile_reason
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "torch.compile failed" in err and "Traceback" not in err


def test_compile_off_is_eager_and_auto_skips_small_jobs(monkeypatch, tmp_path):
    calls = _mock_compile(monkeypatch, tmp_path)
    padded, rows, cols, patch, model = _near_tie_scene()
    for policy in ("off", "auto"):  # 1,600 px: far below what a compilation repays
        runner = Runner.resolve("cpu", "fp32", 64, None, job_pixels=rows.numel(), compile=policy)
        runner.classes(model, padded, rows, cols, patch)
        assert not runner.compiled
    assert calls == [] and "eager" in runner.compile_reason
    big = Runner.resolve("cpu", "fp32", 64, None, job_pixels=10**9, compile="auto")  # fp32: never compiled by auto
    big.classes(model, padded, rows, cols, patch)
    assert calls == [] and not big.compiled and "only the bf16 path" in big.compile_reason


def test_compile_refuses_an_unsafe_cache_folder(monkeypatch, tmp_path, capsys):
    import os

    calls = _mock_compile(monkeypatch, tmp_path)
    d = tmp_path / "cache" / "inductor"
    d.mkdir(parents=True)
    os.chmod(d, 0o777)
    padded, rows, cols, patch, model = _near_tie_scene()
    runner = Runner.resolve("cpu", "fp32", 64, None, job_pixels=rows.numel(), compile="on")
    runner.classes(model, padded, rows, cols, patch)
    assert not runner.compiled and calls == [] and "writable by others" in capsys.readouterr().err


def test_training_precision_follows_the_cpu_and_the_flag(monkeypatch):
    """--precision auto trains under bf16 autocast only where the CPU computes bf16 natively; fp32 and bf16 as asked."""
    import torch

    from hsicls.engine import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: False)
    assert runtime.training_precision("auto", cpu)[0] is False
    assert runtime.training_precision("bf16", cpu) == (True, "--precision bf16")
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: True)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(runtime, "CPU_BF16_TRAINING", True)
    bf16, why = runtime.training_precision("auto", cpu)
    assert bf16 is True and "avx512_bf16" in why
    monkeypatch.setattr(runtime, "CPU_BF16_TRAINING", False)
    assert runtime.training_precision("auto", cpu)[0] is False
    assert runtime.training_precision("fp32", cpu) == (False, "--precision fp32")


def test_the_training_precision_is_recorded_in_the_bundle(prepared, tmp_path):
    import torch

    r = run_cli("train", prepared, "-o", tmp_path / "m.pt", "--model", "md2f-mamba", "--epochs", "1", "--patch-size", "5",
                "--precision", "fp32")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    training = torch.load(tmp_path / "m.pt", weights_only=True)["training"]
    assert training["precision"] == "fp32" and training["precision_reason"] == "--precision fp32"
