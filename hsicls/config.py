"""The options of every stage, each declared once (see :mod:`hsicls.options`).

The CLI flags, ``--help``, ``--config`` files, ``--print-config`` and the records kept in the
prepared file, the bundle and the reports all come from these classes. Values are plain Python
(strings for choices), so records stay JSON and TOML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from hsicls.errors import OptionError
from hsicls.options import Compile, Device, Mask, Options, Precision, opt, shared
from hsicls.science.splits import SPLITS, get_split, option_mixins

Split = Literal[tuple(SPLITS)]  # the registered split protocols
FitOn = Literal["auto", "all", "train"]
Spectra = Literal["auto", "keep", "drop"]
Schedule = Literal["constant", "cosine", "step"]
Padding = Literal["reflect", "zero"]
ConfidenceDtype = Literal["float32", "uint8"]
Sampling = Literal["stratified", "random"]
AreaUnit = Literal["auto", "pixels", "m2", "ha", "km2"]
Allocation = Literal["proportional", "equal", "neyman"]
ClassWeighting = Literal["none", "balanced"]
ValSplit = Literal["auto", "spatial", "random"]
SPECTRAL_AUGMENTS = ("brightness", "noise", "mix")
EnsembleRule = Literal["ensemble", "ensemble-unless", "ensemble-prior", "best-validation", "cross-fit"]


@dataclass
class SplitChoice:
    split: Split = opt(
        "random",
        ", ".join(f"{p.name} ({p.summary})" for p in SPLITS.values()) + ".",
    )


@dataclass
class PreprocessOptions(*reversed(option_mixins()), SplitChoice, Options):
    """``hsicls preprocess``: standardisation, PCA and the train/validation/test split (the options of each
    split protocol are declared with the protocol, in :mod:`hsicls.science.splits`)."""

    components: int = opt(30, "PCA components to keep (0 = no PCA).", min=0)
    val_ratio: float = opt(
        0.2,
        "Fraction of the training pixels held out for validation (model selection); 0 = none, the final epoch is kept.",
        min=0,
        max=1,
        max_open=True,
    )
    val_split: ValSplit = opt(
        "auto",
        "How validation is carved from the training pixels: 'spatial' (whole training regions of each class, else a "
        "strip at one end of a region: apart from the pixels that stay, as the test is), 'random' (scattered pixels, "
        "the behaviour before this option), or 'auto' (spatial on fixed and disjoint splits, random on random and "
        "count splits; group splits validate on whole groups).",
    )
    fit_on: FitOn = opt(
        "auto",
        "Fit standardisation + PCA on 'all' valid pixels, test pixels included (transductive: the paper family's habit), "
        "or on the 'train' and validation pixels only; 'auto': train on group splits (the held-out groups stay unseen), "
        "all otherwise.",
    )
    spectra: Spectra = opt(
        "auto",
        "Also keep the full standardised spectra (no PCA) for spectral models and the ensemble of '--model auto': "
        "'keep', 'drop', or 'auto' (kept up to 2 GiB of spectra).",
    )
    whiten: bool = opt(False, "Scale each PCA component to unit variance (PCA whitening, as in HybridSN and SSFTT).")
    standardize: bool = opt(
        True, "Standardise every band before PCA (default), or run PCA on the raw values (HybridSN's and SSFTT's code)."
    )
    seed: int = shared("seed", help="Seed of the split.")
    key: str | None = shared("key")
    nodata: float | None = shared("nodata")
    mask: Mask = shared("mask")
    labels_key: str | None = opt(None, "Variable of the labels inside a .mat file (auto-detected).")
    label_field: str | None = opt(None, "Class attribute of vector labels.")
    label_layer: str | None = opt(None, "Layer of a vector label file with several (GeoPackage).")
    class_names: list[str] | None = opt(None, "Comma-separated class names, in label order.", comma_list=True)
    palette: list[tuple[int, int, int]] | None = opt(None, "Class colours (set from a registered dataset).", cli=False)

    def _check(self) -> None:
        protocol = get_split(self.split)
        protocol.check(self)
        if protocol.own_validation and self.val_split != "auto":
            raise OptionError(
                f"--val-split {self.val_split}: --split {self.split} validates on whole groups; leave --val-split out"
            )


@dataclass
class TrainOptions(Options):
    """``hsicls train``: the model, the optimiser and the training protocol."""

    model: str = shared(
        "model",
        default="auto",
        help="Registered model name (see 'hsicls models'), or 'auto': md2f-mamba, the spectral network and a random "
        "forest, and their ensemble, the choice made on the validation split (with --dataset: md2f-mamba, the paper's).",
    )
    model_options: dict[str, str] = shared("model_options")
    patch_size: int = shared("patch_size", help="Patch side in pixels, odd (with --dataset: the paper's size for that scene).")
    epochs: int = opt(100, "Training epochs.", min=1, max=100_000)
    batch_size: int = shared("batch_size", default=64, min=2)
    lr: float = opt(0.002, "Adam learning rate (with --dataset: the paper's rate for that scene).", min=0, max=1, min_open=True)
    seed: int = shared("seed")
    device: Device = shared("device")
    weight_decay: float = opt(0.0, "Adam weight decay.", min=0, max=1)
    lr_schedule: Schedule = opt("constant", "Learning-rate schedule (step: x0.1 at 50 % and 75 % of the epochs).")
    early_stopping: int = opt(0, "Stop after N epochs without a better validation OA (0 = off).", min=0)
    label_smoothing: float = opt(0.0, "Label smoothing of the cross-entropy.", min=0, max=1, max_open=True)
    augment: bool = opt(False, "Random flips/transpositions of the training patches.")
    spectral_augment: list[str] | None = opt(
        None,
        "Spectral augmentations of the training samples, any of: brightness (every spectrum scaled by a factor in "
        "0.9-1.1), noise (Gaussian noise of 0.05 standardised units per band), mix (a convex mixture with a spectrum of "
        "the same class in the batch). Kept in the bundle. '--model auto' gives its spectral network brightness,noise,mix.",
        comma_list=True,
    )
    precision: Precision = shared("precision")
    padding: Padding = opt(
        "reflect", "Patches beyond the scene border: reflect the scene, or zero (HybridSN/SSFTT code). Kept in the bundle."
    )
    ema: float = opt(
        0.0,
        "Decay per step of an exponential moving average of the weights, e.g. 0.99 (0 = off); the average is validated and kept.",
        min=0,
        max=1,
        max_open=True,
    )
    class_weighting: ClassWeighting = opt(
        "none",
        "Weight the loss per class: none, or balanced (n / (K n_k) from the training pixels, so every class counts "
        "alike; raises AA when classes are very unequal). Kept in the bundle.",
    )
    patch_search: list[str] | None = opt(
        None,
        "Choose the patch size on the validation split among these odd sizes (e.g. 3,5,7,9,11,13): a short run of "
        "--search-epochs each, the best validation OA wins (ties: the smaller patch); the test split is never looked at. "
        "The choice and every candidate's validation OA are printed and kept in the bundle.",
        comma_list=True,
    )
    search_epochs: int = opt(15, "Epochs of each short run of --patch-search.", min=1, max=10_000)
    ensemble_rule: EnsembleRule = opt(
        "ensemble",
        "How --model auto chooses on the validation split: 'ensemble' (the plain average of the members' calibrated "
        "probabilities), 'ensemble-unless' (the same, unless a member is clearly better: McNemar p < 0.05), "
        "'ensemble-prior' (the average with a prior adjustment chosen on validation: higher AA, lower OA), "
        "'best-validation' (the best validation OA among the members and the validation-weighted ensemble), 'cross-fit' "
        "(weights fitted on each half of the validation regions, averaged).",
    )

    def _check(self) -> None:
        unknown = [a for a in self.spectral_augment or [] if a not in SPECTRAL_AUGMENTS]
        if unknown:
            raise OptionError(f"--spectral-augment {unknown[0]!r}: choose among {', '.join(SPECTRAL_AUGMENTS)}")
        if self.patch_search is not None and not [p for p in self.patch_search if p.strip()]:
            raise OptionError("--patch-search: give the odd patch sizes to choose from, e.g. --patch-search 3,5,7")
        for p in self.patch_search or []:
            if not p.strip().isdigit() or int(p) % 2 == 0:
                raise OptionError(f"--patch-search takes odd patch sizes, e.g. 3,5,7; got {p!r}")
        default_patch = next(f.default for f in dataclasses.fields(self) if f.name == "patch_size")
        if self.patch_search and self.patch_size != default_patch:
            raise OptionError(
                f"--patch-size {self.patch_size} with --patch-search: the search chooses the patch size; give one of them"
            )


@dataclass
class EvaluateOptions(Options):
    """``hsicls evaluate``: how the test split is run through the model."""

    device: Device = shared("device")
    batch_size: int | None = shared("batch_size")
    precision: Precision = shared("precision")
    compile: Compile = shared("compile")


@dataclass
class MapOptions(Options):
    """``hsicls predict-map``: windowing, batching and what is written beside the class map."""

    device: Device = shared("device")
    batch_size: int | None = shared("batch_size")
    precision: Precision = shared("precision")
    compile: Compile = shared("compile")
    window: int = opt(256, "Window side in pixels; peak memory grows with its square, the map does not change.", min=16)
    key: str | None = shared("key")
    nodata: float | None = shared("nodata")
    mask: Mask = shared("mask")
    resample_bands: bool = opt(
        False,
        "Resample the scene's spectra to the model's bands with Gaussian spectral responses built from both sides' "
        "FWHMs (train on one sensor, map another); a model band the scene does not cover is refused.",
    )
    cog: bool = opt(False, "Write Cloud-Optimized GeoTIFFs with overviews (mode resampling for the class map).")
    confidence_dtype: ConfidenceDtype = opt("float32", "Confidence raster: float32, or uint8 (1-255 for 0-1, 0 = nodata).")
    reject_below: float | None = opt(None, "Pixels whose confidence is below T get the class 'unknown'.", min=0, max=1)
    palette: str | None = opt(None, "Class colours and names: JSON {code: {color, name}}, a GDAL .clr or a QGIS .qml file.")
    majority: int | None = opt(
        None,
        "Clean the map with an N x N majority filter (odd N up to 101, at most the map's size; nodata neither votes nor changes).",
        min=3,
        max=101,
        odd=True,
    )
    sieve: int | None = opt(
        None,
        "Minimum mapping unit: regions smaller than PIXELS (8-connected) take their largest neighbour's class, until none "
        "is left but regions with no neighbour (at most the map's pixel count).",
        min=2,
        max=2**31 - 1,
    )


@dataclass
class AssessOptions(Options):
    """``hsicls assess``: how the reference is read, how classes are merged, which estimator."""

    reference_field: str | None = opt(
        None, "Class attribute of a vector reference: text = class names, whole numbers = class codes (0 = unlabelled)."
    )
    reference_layer: str | None = opt(None, "Layer of a vector reference with several (e.g. a GeoPackage).")
    class_map: dict[str, str] = opt(
        {},
        "Merge classes before scoring: SOURCES=TARGET, SOURCES comma-separated codes (digits) or names of map classes "
        "(prefix 'ref:' for reference classes), TARGET the merged class's name or code; e.g. '1,2=impervious' (repeatable).",
        flags=("--class-map",),
        repeat=True,
        metavar="SOURCES=TARGET",
    )
    sampling: Sampling = opt(
        "stratified",
        "Design of the reference sample: stratified by map class (Olofsson et al. 2014, Eq. 2-10) or simple random.",
    )
    area_unit: AreaUnit = opt("auto", "Unit of the adjusted areas (auto: ha for a map in metres, else the CRS unit²).")
    allow_unmatched: bool = opt(
        False, "Score a named map class that no reference class of its name matches (user's accuracy 0) instead of refusing."
    )

    def _check(self) -> None:
        for flag, value in (("--reference-field", self.reference_field), ("--reference-layer", self.reference_layer)):
            if value is not None and not value.strip():
                raise OptionError(f"{flag}: give a name (an attribute or layer of the vector reference), or leave it out")


@dataclass
class SampleOptions(Options):
    """``hsicls sample``: a stratified random reference sample drawn from class maps (Olofsson et al. 2014)."""

    size: int = opt(500, "Total number of sample points.", min=1, flags=("--size", "-n"))
    min_per_class: int = opt(50, "At least this many points per mapped class (fewer where the class has fewer pixels).", min=0)
    allocation: Allocation = opt(
        "proportional",
        "How the points beyond the minimum are shared: in proportion to class area, equally, or by Neyman allocation "
        "(area x sqrt(U (1 - U)) from the expected user's accuracies).",
    )
    expected_ua: dict[str, str] = opt(
        {},
        "Expected user's accuracy of a class for Neyman allocation, CODE=U (repeatable; classes not given: 0.8).",
        flags=("--expected-ua",),
        repeat=True,
        metavar="CODE=U",
    )
    reference_field: str = opt("reference", "Name of the empty attribute the interpreter fills with the reference class.")
    seed: int = shared("seed")

    SAMPLE_COLUMNS = ("id", "map", "row", "col", "x", "y", "map_code", "map_class")  # written by sample itself

    def _check(self) -> None:
        field = self.reference_field.strip()
        if not field:
            raise OptionError("--reference-field: give the name of the attribute to fill, e.g. --reference-field reference")
        if field.lower() in self.SAMPLE_COLUMNS or field.lower() == "fid":
            raise OptionError(
                f"--reference-field {self.reference_field!r} is one of the sample's own columns "
                f"({', '.join(self.SAMPLE_COLUMNS)}); choose another name"
            )


@dataclass
class ModelInfoOptions(Options):
    """``hsicls models`` / ``model-info``: the input a model is sized for."""

    model: str = shared("model")
    bands: int = opt(30, "Bands the network sees (after PCA).", min=1, max=4096)
    patch_size: int = shared("patch_size", aliases=("--patch",))
    classes: int = opt(9, "Number of classes.", min=2, max=65534)
    model_options: dict[str, str] = shared("model_options")
