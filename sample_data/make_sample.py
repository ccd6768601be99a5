"""Regenerate the embedded sample scene (deterministic): ``python sample_data/make_sample.py``.

Writes ``sample_scene.tif`` (128 x 128 px, 120 bands 400-2500 nm, int16 reflectance x 10000,
EPSG:32632, 1.5 m pixels) and ``sample_labels.tif`` (uint8, 10 classes, colour table, class names).
The physics and layout are documented in ``hsicls/synthetic.py``.
"""

from pathlib import Path

from hsicls.synthetic import make_scene, write_scene

SIZE, BANDS, SEED = 128, 120, 2026

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    scene = make_scene(size=SIZE, bands=BANDS, seed=SEED)
    write_scene(scene, here / "sample_scene.tif", here / "sample_labels.tif")
    counts = [int((scene.labels == k).sum()) for k in range(1, len(scene.class_names) + 1)]
    print("labelled pixels per class:", dict(zip(scene.class_names, counts)))
