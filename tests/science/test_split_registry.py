"""Split protocols are registry entries: a new protocol is one class with its options."""

from __future__ import annotations

from hsicls.config import PreprocessOptions
from tests.conftest import run_cli

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


from hsicls.cli.main import run  # the options classes are built after the registration

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


def test_the_guarded_footprint_is_a_fact_of_the_protocol():
    """How large a training patch may be is asked of the protocol, not tested against protocol names."""
    from hsicls.science.splits import guarded_footprint

    assert guarded_footprint({"protocol": "disjoint", "patch_size": 9}) == 9
    assert guarded_footprint({"protocol": "group", "group_by": "block", "patch_size": 9}) == 9
    assert guarded_footprint({"protocol": "group", "group_by": "scene", "patch_size": 9}) is None  # scenes are apart
    assert guarded_footprint({"protocol": "random", "val_ratio": 0.2}) is None
    assert guarded_footprint({"protocol": "fixed"}) is None
    assert guarded_footprint({}) is None  # files without a split record


def test_a_patch_larger_than_a_block_splits_guard_is_refused(tiny_scene, tmp_path):
    cube, labels = tiny_scene
    p = tmp_path / "g.h5"
    args = ("--split", "group", "--group-by", "block", "--block-size", "8", "--folds", "2", "--patch-size", "3")
    r = run_cli("preprocess", cube, "-l", labels, "-o", p, "--components", "5", *args)
    assert r.exit_code == 0, r.stderr
    r = run_cli("train", p, "-o", tmp_path / "m.pt", "--model", "md2f-mamba", "--epochs", "1", "--patch-size", "5")
    assert r.exit_code == 1 and "guards 3x3 footprints" in r.stderr and not (tmp_path / "m.pt").exists(), r.stderr
