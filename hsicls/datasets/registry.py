"""Declarative registry of public hyperspectral benchmark scenes.

Facts (file names, sizes, sha256, MAT keys, class names) are those gathered and verified in
``shared/data/README.md`` of this project; a ``None`` checksum means no trustworthy value is
known yet, and such a file is not downloaded (hsicls verifies every download).
"""

from __future__ import annotations

from dataclasses import dataclass

from hsicls.errors import OptionError

GIC = "https://www.ehu.eus/ccwintco/uploads/"
GIC_OLD = "http://www.ehu.es/ccwintco/uploads/"


@dataclass(frozen=True)
class RemoteFile:
    name: str
    urls: tuple[str, ...]  # primary first, then mirrors, tried in order
    sha256: str | None
    size: int | None = None
    key: str | None = None  # variable name inside a .mat file
    extract: bool = False  # a zip archive to unpack into the dataset folder
    manual: str | None = None  # how to obtain it by hand when it cannot be downloaded


@dataclass(frozen=True)
class DatasetInfo:
    """One public scene. ``cube``/``labels`` are paths inside ``<data-dir>/<name>/`` after
    download (and extraction); ``train_mask``/``test_mask`` name an official fixed split."""

    name: str
    title: str
    sensor: str
    shape: tuple[int, int, int]  # rows, cols, bands
    class_names: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    cube: str
    labels: str
    cube_key: str | None = None
    labels_key: str | None = None
    wavelengths_nm: tuple[float, float] | None = None
    patch_size: int = 13
    notes: str = ""
    train_mask: str | None = None
    test_mask: str | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    lr: float = 0.002  # the paper's Adam learning rate for this scene

    @property
    def colours(self) -> list[tuple[int, int, int]]:
        from hsicls.io.palette import default_palette

        return list(self.palette) if self.palette else default_palette(len(self.class_names))

    @property
    def verified(self) -> bool:
        return all(f.sha256 for f in self.files)


def _gic(path: str, sha256: str | None, size: int | None, key: str, mirrors: tuple[str, ...] = ()) -> RemoteFile:
    name = path.rsplit("/", 1)[-1]
    return RemoteFile(name, (GIC + path, GIC_OLD + path, *mirrors), sha256, size, key)


def _gic_scene(name, title, sensor, shape, names, cube: RemoteFile, gt: RemoteFile, wl, patch=13, notes="") -> DatasetInfo:
    return DatasetInfo(
        name, title, sensor, shape, tuple(names), (cube, gt), cube.name, gt.name, cube.key, gt.key, wl, patch, notes
    )


HF = "https://huggingface.co/datasets/danaroth/"
RAW_SG = "https://raw.githubusercontent.com/SphrGhfri/noisy-hyperspectral-classification/HEAD/"
ZENODO_SA = "https://zenodo.org/records/15771735/files/"


IP_NAMES = (
    "Alfalfa",
    "Corn-notill",
    "Corn-mintill",
    "Corn",
    "Grass-pasture",
    "Grass-trees",
    "Grass-pasture-mowed",
    "Hay-windrowed",
    "Oats",
    "Soybean-notill",
    "Soybean-mintill",
    "Soybean-clean",
    "Wheat",
    "Woods",
    "Buildings-Grass-Trees-Drives",
    "Stone-Steel-Towers",
)
PU_NAMES = (
    "Asphalt",
    "Meadows",
    "Gravel",
    "Trees",
    "Painted metal sheets",
    "Bare Soil",
    "Bitumen",
    "Self-Blocking Bricks",
    "Shadows",
)
PC_NAMES = ("Water", "Trees", "Asphalt", "Self-Blocking Bricks", "Bitumen", "Tiles", "Shadows", "Meadows", "Bare Soil")
SA_NAMES = (
    "Brocoli_green_weeds_1",
    "Brocoli_green_weeds_2",
    "Fallow",
    "Fallow_rough_plow",
    "Fallow_smooth",
    "Stubble",
    "Celery",
    "Grapes_untrained",
    "Soil_vinyard_develop",
    "Corn_senesced_green_weeds",
    "Lettuce_romaine_4wk",
    "Lettuce_romaine_5wk",
    "Lettuce_romaine_6wk",
    "Lettuce_romaine_7wk",
    "Vinyard_untrained",
    "Vinyard_vertical_trellis",
)
KSC_NAMES = (
    "Scrub",
    "Willow swamp",
    "Cabbage palm hammock",
    "Cabbage palm/oak hammock",
    "Slash pine",
    "Oak/broadleaf hammock",
    "Hardwood swamp",
    "Graminoid marsh",
    "Spartina marsh",
    "Cattail marsh",
    "Salt marsh",
    "Mud flats",
    "Water",
)
BW_NAMES = (
    "Water",
    "Hippo grass",
    "Floodplain grasses 1",
    "Floodplain grasses 2",
    "Reeds",
    "Riparian",
    "Firescar",
    "Island interior",
    "Acacia woodlands",
    "Acacia shrublands",
    "Acacia grasslands",
    "Short mopane",
    "Mixed mopane",
    "Exposed soils",
)
HOUSTON_NAMES = (
    "Healthy grass",
    "Stressed grass",
    "Synthetic grass",
    "Trees",
    "Soil",
    "Water",
    "Residential",
    "Commercial",
    "Road",
    "Highway",
    "Railway",
    "Parking Lot 1",
    "Parking Lot 2",
    "Tennis Court",
    "Running Track",
)
LK_NAMES = (
    "Corn",
    "Cotton",
    "Sesame",
    "Broad-leaf soybean",
    "Narrow-leaf soybean",
    "Rice",
    "Water",
    "Roads and houses",
    "Mixed weed",
)
HC_NAMES = (
    "Strawberry",
    "Cowpea",
    "Soybean",
    "Sorghum",
    "Water spinach",
    "Watermelon",
    "Greens",
    "Trees",
    "Grass",
    "Red roof",
    "Gray roof",
    "Plastic",
    "Bare soil",
    "Road",
    "Bright object",
    "Water",
)
HH_NAMES = (
    "Red roof",
    "Road",
    "Bare soil",
    "Cotton",
    "Cotton firewood",
    "Rape",
    "Chinese cabbage",
    "Pakchoi",
    "Cabbage",
    "Tuber mustard",
    "Brassica parachinensis",
    "Brassica chinensis",
    "Small Brassica chinensis",
    "Lactuca sativa",
    "Celtuce",
    "Film covered lettuce",
    "Romaine lettuce",
    "Carrot",
    "White radish",
    "Garlic sprout",
    "Broad bean",
    "Tree",
)
WHU = "http://rsidea.whu.edu.cn/"
HF_WHU = "https://huggingface.co/datasets/danaroth/whu_hi/resolve/main/"


def _whu(name: str, title: str, folder: str, stem: str, shape, names, patch=13, lr=0.002) -> DatasetInfo:
    manual = f"Get {stem}.mat from {WHU}resource_WHUHi_sharing.htm and import it with 'hsicls download {name} --from FILE'"
    cube = RemoteFile(f"{stem}.mat", (HF_WHU + f"{folder}/{stem}.mat",), None, None, stem, manual=manual)
    gt = RemoteFile(f"{stem}_gt.mat", (HF_WHU + f"{folder}/{stem}_gt.mat",), None, None, f"{stem}_gt", manual=manual)
    return DatasetInfo(
        name,
        title,
        "Headwall Nano-Hyperspec (UAV)",
        shape,
        tuple(names),
        (cube, gt),
        cube.name,
        gt.name,
        stem,
        f"{stem}_gt",
        (400.0, 1000.0),
        patch,
        "checksums not yet verified",
        lr=lr,
    )


HOUSTON_PAGE = "https://machinelearning.ee.uh.edu/2013-ieee-grss-data-fusion-contest/"
HOUSTON_MANUAL = (
    f"Houston 2013 needs registration: request 2013_DFTC.zip at {HOUSTON_PAGE}, then run "
    f"'hsicls download houston2013 --from 2013_DFTC.zip'"
)


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        _gic_scene(
            "indian-pines",
            "Indian Pines",
            "AVIRIS",
            (145, 145, 200),
            IP_NAMES,
            _gic(
                "6/67/Indian_pines_corrected.mat",
                "ec2f8808710919d566f70f0d4aa885aae1ddfd42b734aba71c5e12ca65450939",
                5953527,
                "indian_pines_corrected",
                (HF + "indian_pines/resolve/main/Indian_pines_corrected.mat",),
            ),
            _gic(
                "c/c4/Indian_pines_gt.mat",
                "65c4687a8ab04f6da4789799bc3bc4f6e88bccac3ed6a2e6ae367e5e6b9e429c",
                1125,
                "indian_pines_gt",
                (HF + "indian_pines/resolve/main/Indian_pines_gt.mat",),
            ),
            (400.0, 2500.0),
        ),
        _gic_scene(
            "pavia-university",
            "Pavia University",
            "ROSIS-03",
            (610, 340, 103),
            PU_NAMES,
            _gic(
                "e/ee/PaviaU.mat",
                "28447fa87f7a5797845e9a189c0da85e23b1d06a4ba7361e5ff44efbf834d2fb",
                34806917,
                "paviaU",
                (HF + "pavia/resolve/main/PaviaU.mat", RAW_SG + "Pavia/PaviaU.mat"),
            ),
            _gic(
                "5/50/PaviaU_gt.mat",
                "23f6a426928f9b32984adffe659e29f554f9fb6c93b5a107528d308d5087a829",
                11005,
                "paviaU_gt",
                (RAW_SG + "Pavia/PaviaU_gt.mat",),
            ),
            (430.0, 860.0),
        ),
        _gic_scene(
            "pavia-centre",
            "Pavia Centre",
            "ROSIS-03",
            (1096, 715, 102),
            PC_NAMES,
            _gic("e/e3/Pavia.mat", "b60341da323fd271cd97dd6d7a69514d385ccd7fdfc5a60c4ff5994b047f152e", 129624657, "pavia"),
            _gic("5/53/Pavia_gt.mat", "7eb54ab81b404dd3ae572e6d0ec211595029e5a847bec2cfb8f9e72d07066b69", 34887, "pavia_gt"),
            (430.0, 860.0),
        ),
        _gic_scene(
            "salinas",
            "Salinas",
            "AVIRIS",
            (512, 217, 204),
            SA_NAMES,
            _gic(
                "a/a3/Salinas_corrected.mat",
                "5ec1c0d22f56d18ecd336f8e35735863c0f160682e04e0c18ef3f89a3334d87d",
                26552770,
                "salinas_corrected",
                (ZENODO_SA + "Salinas_corrected.mat?download=1", RAW_SG + "Salinas/Salinas_corrected.mat"),
            ),
            _gic(
                "f/fa/Salinas_gt.mat",
                "ecfab4d31ef5553f097943235d8ea502038eb4a2067b2ad10b33e37c949955e2",
                4277,
                "salinas_gt",
                (ZENODO_SA + "Salinas_gt.mat?download=1", RAW_SG + "Salinas/Salinas_gt.mat"),
            ),
            (400.0, 2500.0),
        ),
        _gic_scene(
            "salinas-a",
            "Salinas-A",
            "AVIRIS",
            (83, 86, 204),
            tuple(SA_NAMES[i - 1] for i in (1, 10, 11, 12, 13, 14)),
            _gic(
                "d/df/SalinasA_corrected.mat",
                "d75684ed3ab71a1024cee0f9db9061f50a3523a92ff5edfbbb1eed976b9f1721",
                1539086,
                "salinasA_corrected",
            ),
            _gic("a/aa/SalinasA_gt.mat", "17814c1d3296c0e29b27f320f2c4174d2a68adb87e376abe78f02923e2c2e454", 587, "salinasA_gt"),
            (400.0, 2500.0),
            13,
            "label values 1, 10-14 of Salinas, relabelled 1..6",
        ),
        _gic_scene(
            "ksc",
            "Kennedy Space Center",
            "AVIRIS",
            (512, 614, 176),
            KSC_NAMES,
            _gic("2/26/KSC.mat", "b1ad011cfdb65c853e4f9f6108ca4774467d87f90a5c23b74ff3a2984a3b4786", 56824624, "KSC"),
            _gic("a/a6/KSC_gt.mat", "a1d6ab9293691006bd4d9742d1a1e1c141b1aaa5fbc5fa128b33c1d09038510b", 3240, "KSC_gt"),
            (400.0, 2500.0),
        ),
        _gic_scene(
            "botswana",
            "Botswana",
            "EO-1 Hyperion",
            (1476, 256, 145),
            BW_NAMES,
            _gic("7/72/Botswana.mat", "f1603903c844cdc2980550b0180688e8e1a72d4292595d1120e1dec2a80a91c7", 78911133, "Botswana"),
            _gic("5/58/Botswana_gt.mat", "668394905e10e629c16584bfd02b0f533b96d6ba18a63274a94ff3a77126a887", 4039, "Botswana_gt"),
            (400.0, 2500.0),
        ),
        DatasetInfo(
            "houston2013",
            "Houston 2013 (GRSS DFC)",
            "ITRES CASI-1500",
            (349, 1905, 144),
            HOUSTON_NAMES,
            (
                RemoteFile(
                    "2013_DFTC.zip",
                    ("https://machinelearning.ee.uh.edu/2egf4tg8hial13gt/2013_DFTC.zip",),
                    "f4d619d5cbcb09d0301038f1b8fe83def6c2d484334b7b8127740a00ecf7e245",
                    extract=True,
                    manual=HOUSTON_MANUAL,
                ),
                RemoteFile(
                    "2013_IEEE_GRSS_DF_Contest_Samples_VA.txt",
                    (
                        "https://github.com/songyz2019/rs-fusion-datasets-dist/releases/download/v1.0.0/2013_IEEE_GRSS_DF_Contest_Samples_VA.txt",
                        "https://pastebin.com/raw/FJyu5SQX",
                    ),
                    "768bb02193d04c8020b45f1f31a49926a5b914040f77f71a81df756d6e8b8dcb",
                    242354,
                ),
            ),
            cube="2013_DFTC/2013_IEEE_GRSS_DF_Contest_CASI.tif",
            labels="2013_IEEE_GRSS_DF_Contest_Samples_VA.txt",
            wavelengths_nm=(380.0, 1050.0),
            notes="labels = official training (TR) + test (VA) ROIs, split at random like the paper; registration required",
            train_mask="2013_DFTC/2013_IEEE_GRSS_DF_Contest_Samples_TR.txt",
            test_mask="2013_IEEE_GRSS_DF_Contest_Samples_VA.txt",
        ),
        _whu("whu-hi-longkou", "WHU-Hi-LongKou", "WHU-Hi-LongKou", "WHU_Hi_LongKou", (550, 400, 270), LK_NAMES, patch=11),
        _whu("whu-hi-hanchuan", "WHU-Hi-HanChuan", "WHU-Hi-HanChuan", "WHU_Hi_HanChuan", (1217, 303, 274), HC_NAMES, lr=0.004),
        _whu("whu-hi-honghu", "WHU-Hi-HongHu", "WHU-Hi-HongHu", "WHU_Hi_HongHu", (940, 475, 270), HH_NAMES),
    ]
}


# The short names users type (the design card's "--dataset houston"): alias -> registered name.
# Registered names match without their punctuation too (salinas, salinasa, ksc, indianpines).
ALIASES = {
    "houston": "houston2013",
    "pavia": "pavia-centre",
    "paviac": "pavia-centre",
    "paviau": "pavia-university",
    "indian": "indian-pines",
    "longkou": "whu-hi-longkou",
    "hanchuan": "whu-hi-hanchuan",
    "honghu": "whu-hi-honghu",
}


def _compact(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def get_dataset(name: str) -> DatasetInfo:
    """A registered scene by its name or a short alias; case, ``-``, ``_`` and spaces do not
    matter (``Indian_Pines``, ``indianpines``, ``indian``, ``PaviaU``)."""
    key = _compact(name)
    by_compact = {_compact(k): k for k in DATASETS}
    found = by_compact.get(key) or ALIASES.get(key)
    if found is None:
        short = ", ".join(ALIASES)
        raise OptionError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)}; short names: {short})")
    return DATASETS[found]


def aliases_of(name: str) -> list[str]:
    """The short names accepted for registered scene ``name``."""
    return [a for a, n in ALIASES.items() if n == name]


def list_datasets() -> list[DatasetInfo]:
    return list(DATASETS.values())
