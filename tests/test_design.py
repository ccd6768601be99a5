"""[design]: options declared once, --config / --print-config, validation before data, typed bundle,
no function over 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from hsicls.config import EvaluateOptions, MapOptions, PreprocessOptions, TrainOptions
from hsicls.errors import OptionError
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ("--model", "md2f-mamba", "--epochs", "2", "--patch-size", "5", "--batch-size", "32", "--device", "cpu")


def _one_error(r, *needles):
    assert r.exit_code != 0 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


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
    _one_error(run_cli("train", "--model", "md2f-mamba", "p.h5", "-o", "m.pt", "--config", cfg), "c.toml", "epoch")
    cfg.write_text("[train\n")
    _one_error(run_cli("train", "--model", "md2f-mamba", "p.h5", "-o", "m.pt", "--config", cfg), "c.toml", "TOML")


def test_invalid_choice_is_refused_at_parse_time_with_the_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    r = run_cli("train", "--model", "md2f-mamba", tmp_path / "none.h5", "-o", tmp_path / "m.pt", "--lr-schedule", "linear")
    line = _one_error(r, "--lr-schedule")
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
    _one_error(r, needle)


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
    _one_error(run_cli("model-info", "--patch-size", "4"), "odd")
    _one_error(run_cli("model-info", "--classes", "0"), "--classes")


def _bundle_without(src: Path, dst: Path, drop=None, change=None) -> Path:
    b = torch.load(src, weights_only=True)
    if drop:
        b.pop(drop)
    if change:
        b.update(change)
    torch.save(b, dst)
    return dst


@pytest.mark.parametrize(
    "drop, change, needle",
    [
        ("preprocessing", None, "missing 'preprocessing'"),
        ("model", None, "missing 'model'"),
        (None, {"class_names": "abc"}, "class_names"),
        (None, {"palette": [[0, 0, 0]]}, "classes"),
        (None, {"model": {"name": "md2f-mamba"}}, "model.options"),
    ],
)
def test_broken_bundle_gives_one_line_naming_the_file(bundle, prepared, tmp_path, drop, change, needle):
    bad = _bundle_without(bundle, tmp_path / "broken.pt", drop, change)
    _one_error(run_cli("evaluate", bad, prepared), "broken.pt", needle)


def test_no_function_in_the_package_is_over_80_lines():
    long = []
    for p in sorted((ROOT / "hsicls").rglob("*.py")):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 80:
                long.append(f"{p.relative_to(ROOT)}:{n.name} ({n.end_lineno - n.lineno + 1} lines)")
    assert not long, long


def test_every_cli_option_of_a_stage_is_a_declared_field():
    """The stage commands' option flags are exactly the declared fields plus the command-level ones."""
    from typer.main import get_command

    from hsicls.cli.commands import app

    cmd = get_command(app)
    for name, cls in (("train", TrainOptions), ("evaluate", EvaluateOptions), ("predict-map", MapOptions)):
        names = {p.name for p in cmd.commands[name].params}
        declared = {f.name for f, spec, _ in cls.declared() if spec.cli}
        assert declared <= names, declared - names


PLUGIN_SPLIT = '''
import sys
from dataclasses import dataclass

import numpy as np

from hsicls.options import opt
from hsicls.science.splits import SplitProtocol


@dataclass
class StripeOptions:
    stripe_rows: int = opt(8, "Split stripes: rows per stripe.", min=1)


class Stripes(SplitProtocol, name="stripes", summary="alternate row stripes", options=StripeOptions, recorded=["stripe_rows"]):
    """Even stripes train, odd stripes test: a protocol that lives in one file."""

    def describe(self, o):
        return f"{o.stripe_rows}-row stripes"

    def split(self, labels, o, inputs):
        even = (np.arange(labels.shape[0]) // o.stripe_rows % 2 == 0)[:, None] & (labels > 0)
        return even, np.zeros_like(even), (labels > 0) & ~even


from hsicls.cli.commands import run  # the options classes are built after the registration

sys.exit(run(sys.argv[1:]))
'''


def test_a_split_protocol_is_one_registered_class_with_its_options(tiny_scene, tmp_path):
    """A protocol registered before the CLI is built gets its --split choice, its own flag and its record."""
    import subprocess
    import sys

    from hsicls.artifacts.prepared import load_prepared

    cube, labels = tiny_scene
    script, out = tmp_path / "stripes.py", tmp_path / "p.h5"
    script.write_text(PLUGIN_SPLIT)
    args = ["preprocess", cube, "-l", labels, "-o", out, "--split", "stripes", "--stripe-rows", "5", "--components", "4"]
    r = subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    split = load_prepared(out).meta["split"]
    assert split["protocol"] == "stripes" and split["stripe_rows"] == 5
    assert split["description"].startswith("5-row stripes, validation 0.2 of training")
    assert "stripes" not in PreprocessOptions.declared()[0][2].__args__  # this process never registered it


def _cube_tif(path, cube, wavelengths, fwhm, shift=(0.0, 0.0)):
    """A GeoTIFF cube ``(H, W, B)`` with per-band ENVI-style wavelength / FWHM tags."""
    import rasterio
    from rasterio.transform import Affine

    h, w, b = cube.shape
    t = Affine(30.0, 0, 500_000 + shift[0], 0, -30.0, 5_800_000 + shift[1])
    with rasterio.open(
        path, "w", driver="GTiff", height=h, width=w, count=b, dtype="float32", crs="EPSG:32633", transform=t
    ) as ds:
        ds.write(cube.transpose(2, 0, 1).astype("float32"))
        for i in range(b):
            ds.update_tags(i + 1, wavelength=f"{wavelengths[i]:.2f}", fwhm=f"{fwhm[i]:.2f}")
    return path


def test_an_all_nan_band_leaves_with_its_wavelength_and_fwhm(tmp_path):
    """Dropping a band drops all its facts: the FWHM list stays as long as the band list, so band matching keeps its
    half-FWHM tolerance instead of falling back to 1 nm (3 nm apart is then one band, not an error)."""
    from hsicls.io.readers import open_cube
    from hsicls.science.scenesets import check_bands_agree

    rng = np.random.default_rng(0)
    cube = rng.random((8, 9, 12)).astype("float32") + 0.1
    wl, fw = np.linspace(450, 900, 12), np.full(12, 10.0)
    cube[..., 5] = np.nan
    a = open_cube(_cube_tif(tmp_path / "a.tif", cube, wl, fw))
    assert a.bands.count == 11 and 6 not in a.bands.numbers
    assert len(a.bands.fwhm) == len(a.bands.wavelengths) == 11 and wl[5] not in a.bands.wavelengths
    b = open_cube(_cube_tif(tmp_path / "b.tif", np.delete(cube, 5, axis=2), np.delete(wl, 5) + 3.0, np.delete(fw, 5), (270, 0)))
    assert check_bands_agree([a, b]).count == 11  # within half the FWHM (5 nm)
    np.testing.assert_array_equal(a.read().data, np.delete(cube, 5, axis=2))


def test_band_records_round_trip_with_bad_bands():
    from hsicls.io.cube import Band, BandSet

    bands = BandSet([Band(1, "a", 400, 5), Band(2, "b", 410, 5, bad=True), Band(3, "c", 420, 6)])
    assert bands.count == 2 and bands.numbers == [1, 3] and bands.bad_bands == [2] and bands.fwhm == [5, 6]
    back = BandSet.from_dict(bands.to_dict(), 0)
    assert back.to_dict() == bands.to_dict() and back.numbers == [1, 3]
    assert bands.keep([1, 0]).wavelengths == [420, 400] and bands.keep([1, 0]).bad_bands == [2]


def test_one_grid_type_places_windows_and_rasters():
    from rasterio.crs import CRS

    from hsicls.io.grid import GeoGrid

    g = GeoGrid(10, 7, CRS.from_epsg(32633).to_wkt(), (30.0, 0.0, 1000.0, 0.0, -30.0, 2000.0))
    assert list(g.windows(4))[:3] == [(0, 4, 0, 4), (0, 4, 4, 7), (4, 8, 0, 4)] and len(list(g.windows(4))) == 6
    assert g.with_halo(0, 4, 4, 7, 2) == (0, 6, 2, 7)
    sub = g.window(2, 5, 3, 7)
    assert sub.shape == (3, 4) and sub.transform[2] == 1090.0 and sub.transform[5] == 1940.0
    assert g.placement(g) == "same" and g.placement(sub) == "warp" and GeoGrid(10, 7).placement(GeoGrid(10, 7)) == "same"
    assert GeoGrid(10, 7).placement(GeoGrid(9, 7)) is None
    ok, r, c = g.rowcol(np.array([1000.0 + 45, 999.0]), np.array([2000.0 - 75, 1990.0]))
    assert ok.tolist() == [True, False] and (r[0], c[0]) == (2, 1)
    codes = np.arange(12, dtype=np.int32).reshape(3, 4) + 1
    np.testing.assert_array_equal(g.warp_codes(codes, sub)[2:5, 3:7], codes)
    assert g.pixel_area() == (900.0, "m²") and GeoGrid(3, 3).pixel_area() == (1.0, "pixels")


def test_file_formats_come_from_one_registry_and_a_new_one_is_one_class(tmp_path):
    """Every reader asks format_of; a format registered once (here: a NumPy .npz holding 'cube' or 'labels')
    opens as a cube and as labels everywhere, without another edit."""
    from hsicls.io.formats import FORMATS, format_of
    from hsicls.io.formats.arrays import ArrayFormat
    from hsicls.io.readers import open_cube, read_labels

    assert [format_of(tmp_path / n).name for n in ("a.tif", "a.hdr", "a.mat", "a.npy", "a.txt", "a.gpkg", "a")] == [
        "gdal", "envi", "mat", "npy", "envi-roi", "vector", "gdal"
    ]  # fmt: skip

    class NpzFormat(ArrayFormat, name="npz", description="a NumPy archive", suffixes=[".npz"]):
        def load(self, path, key, ndim):
            with np.load(path) as z:
                return z["cube" if ndim == 3 else "labels"]

    try:
        cube = np.random.default_rng(1).random((5, 6, 4)).astype("float32") + 0.1
        np.savez(tmp_path / "s.npz", cube=cube, labels=np.ones((5, 6), np.uint8))
        src = open_cube(tmp_path / "s.npz")
        assert src.bands.count == 4 and not src.grid.georeferenced
        np.testing.assert_array_equal(src.read().data, cube)
        assert read_labels(tmp_path / "s.npz").sum() == 30
    finally:
        del FORMATS["npz"]


def test_declared_outputs_are_exactly_the_files_written(bundle, prepared, tiny_scene, tmp_path):
    """Each command's declaration (its stage's declare_outputs) names every file the command leaves, and no other."""
    from hsicls.io.maps import MapOutputs
    from hsicls.stages import evaluate, train

    def written(folder):
        return {p for p in folder.iterdir() if not p.name.startswith(".")}

    ev = tmp_path / "ev"
    ev.mkdir()
    assert run_cli("evaluate", bundle, prepared, "--report", ev / "rep", "--plot", ev / "cm.png").exit_code == 0
    assert written(ev) == set(evaluate.declare_outputs(ev / "rep", ev / "cm.png").paths)

    pm = tmp_path / "pm"
    pm.mkdir()
    r = run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", pm / "m.tif", "--confidence", pm / "c.tif")
    assert r.exit_code == 0, r.stderr
    assert written(pm) == set(MapOutputs(pm / "m.tif", pm / "c.tif").declared().paths)

    tr = tmp_path / "tr"
    tr.mkdir()
    r = run_cli(
        "train", "--model", "md2f-mamba", prepared, "-o", tr / "m.pt", "--epochs", "1", "--patch-size", "3", "--device", "cpu"
    )
    assert r.exit_code == 0, r.stderr
    declared = train.declare_outputs(tr / "m.pt")
    assert written(tr) == set(declared.paths) - {declared["checkpoint"]}  # the checkpoint goes when the run ends


def test_a_declaration_is_checked_once_per_command(tmp_path):
    """The CLI and the stage guard the same declaration: the second guard in one command checks nothing again
    (a file the command itself has begun to write is not 'already there'), and a sidecar that is a link is refused."""
    from hsicls.artifacts.outputs import Declared, OutputSet, command_scope
    from hsicls.errors import HsiclsError, OutputExistsError

    out = tmp_path / "a.txt"
    with command_scope():
        OutputSet(Declared("a", out)).guard(False)
        out.write_text("begun")
        OutputSet(Declared("a", out)).guard(False)  # checked already: not refused
    with command_scope(), pytest.raises(OutputExistsError):
        OutputSet(Declared("a", out)).guard(False)
    (tmp_path / "b.qml").symlink_to(out)
    with pytest.raises(HsiclsError, match="symbolic link"):
        OutputSet(Declared("b", tmp_path / "b.tif"), Declared("qml", tmp_path / "b.qml", sidecar=True)).guard(True)


def test_the_cli_starts_without_numpy_or_torch():
    """The command line (its options, the split protocols' declarations included) loads before any array library:
    --help and usage errors stay quick."""
    import subprocess
    import sys

    code = "import sys, hsicls.cli.commands; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
