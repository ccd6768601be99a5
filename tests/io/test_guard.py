"""The output guard: each command's declared outputs are exactly the files it writes, checked once per command."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


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
    from hsicls.errors import HsiclsError, OutputExistsError
    from hsicls.io.guard import Declared, OutputSet, command_scope

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
