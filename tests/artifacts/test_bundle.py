"""The typed model bundle: a damaged or incomplete bundle is one line naming the file and what it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import one_error, run_cli


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
    one_error(run_cli("evaluate", bad, prepared), "broken.pt", needle)
