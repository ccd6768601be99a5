"""Stage ``predict-map`` over several processes (``torchrun``): units claimed, parts committed, maps assembled.

Every rank loads the bundle and opens each scene; the windows of a scene's window grid (the same
grid as in one process) are its units of work. A rank claims the next unit from the scene's
counter in the shared store (:meth:`hsicls.engine.distributed.World.claim`), classifies it exactly as
one process would (:class:`hsicls.stages.predict_map._Classifier`, same window, same halo, same batches) and
commits it as a part file (:class:`hsicls.artifacts.parts.PartFolder`); a unit committed by an earlier,
failed run is passed over unread. The rank that completes a scene's last unit assembles the parts
into the map, its confidence and probability rasters and preview (:class:`hsicls.io.maps.MapWriter`:
same profile, colour table, class names, COG), writes the sidecars and removes the parts, while
the other ranks go on with the next scene. So the map equals the one-process map pixel for pixel,
whatever the number of ranks, and a rerun (or a restart by ``torchrun --max-restarts``) resumes.

Rank 0 alone decides which scenes to do (existing maps skipped, outputs checked) and prepares
their part folders; it alone prints. A scene that fails is recorded in the store; with one
scene the run ends with that line and a non-zero exit, with nothing under the final names.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import numpy as np

from hsicls import console
from hsicls.artifacts.bundle import Bundle, load_bundle
from hsicls.artifacts.parts import PartFolder, job_fingerprint
from hsicls.config import MapOptions
from hsicls.engine.distributed import RankFailed, World
from hsicls.engine.inference import Runner
from hsicls.engine.runtime import tune_allocator
from hsicls.errors import HsiclsError, InputError
from hsicls.io.disk import json_safe
from hsicls.io.locks import output_lock
from hsicls.io.maps import MapOutputs, write_sidecars
from hsicls.stages.predict_map import (
    _Classifier,
    _open_scene,
    _prefetch,
    _summary,
    check_clean_up,
    checkable_bf16,
    class_table,
    cleaned_counts,
    map_writer,
)

__all__ = ["predict_maps_distributed", "UNIT_WINDOW"]

# Under torchrun the window grid is at most 64 px: a 256-px window makes one unit of a 256 x 256
# tile and leaves a rank idle. The map does not change: every pixel sees the same patch, and the
# network's per-pixel results do not depend on the batch (checked bit for bit in fp32 on one thread:
# windows of 16, 64 and 256 px give identical classes, confidences and probabilities). The halo
# read again around smaller windows costs little next to the network.
UNIT_WINDOW = 64


def _plan(world: World, scenes: list[Path], bundle_path: Path, template: MapOutputs, options: MapOptions, overwrite, many, held,
          checked: dict):  # fmt: skip
    """Rank 0: the scenes to map (with their outputs checked and part folders ready, each locked in ``held``,
    an ExitStack that rank 0 keeps open to the end of the run), skipped, failed; the loaded bundle in ``checked``."""
    try:
        checked["bundle"] = load_bundle(bundle_path)  # the one bundle check, before any part folder is made
    except HsiclsError as exc:
        return {"error": str(exc)}
    stems = [p.stem for p in scenes]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if many and dup:
        return {"error": f"scenes need distinct file stems for their map names: {', '.join(dup)} given twice"}
    plan = {"error": None, "jobs": [], "skipped": [], "failed": []}
    for p in scenes:
        try:
            outputs = template.for_stem(p.stem, many)
            if many and outputs.map.exists() and not overwrite:
                console.info(f"{p.name}: {outputs.map} exists; skipped (--overwrite to redo)")
                plan["skipped"].append(str(p))
                continue
            outputs.declared().guard(overwrite, inputs=[p, bundle_path], lock=False)  # the assembling rank locks
            parts = PartFolder(outputs.map, uuid.uuid4().hex)
            try:  # one job per part folder: a second one is refused before it touches the first's parts
                held.enter_context(output_lock(parts.dir))
            except HsiclsError:
                raise HsiclsError(
                    f"{outputs.map}: another predict-map job is computing this map now; wait for it to finish or "
                    f"choose another output name"
                ) from None
            done = parts.prepare(job_fingerprint(p, bundle_path, outputs, options))
            if done:
                console.info(f"{p.name}: resuming, {done} units already done")
        except HsiclsError as exc:
            if not many:
                return {"error": str(exc)}
            console.error(str(exc) if str(exc).startswith((str(p), p.name)) else f"{p.name}: {exc}")  # named once
            plan["failed"].append({"scene": str(p), "error": str(exc)})
            continue
        plan["jobs"].append({"scene": p, "outputs": outputs, "job_id": parts.job_id})
    return plan


class _RankJob:
    """One rank's share of the run: the classifier, and what it did (pixels, seconds)."""

    def __init__(self, world: World, bundle: Bundle | Path, template: MapOutputs, options: MapOptions, overwrite: bool):
        self.world, self.options, self.overwrite = world, options, overwrite
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)  # rank 0's was loaded by its check
        need_probs = template.needs_probabilities(options.reject_below)
        runner = Runner.resolve(  # the job's size is not known per rank: --compile auto stays eager, on compiles
            options.device,
            options.precision,
            options.batch_size,
            checkable_bf16(self.bundle, need_probs),
            compile=options.compile,
        )
        self.runner = runner.on(world.device(runner.device))
        self.classify = _Classifier(self.bundle, self.runner, options, need_probs, template.probabilities is not None)
        self.table = class_table(self.bundle, options)
        self.lut = np.array([0] + self.table.codes, np.uint16)
        self.pixels, self.t0 = 0, time.perf_counter()

    def scene(self, i: int, job: dict) -> None:
        """Claim and classify units of scene ``i`` until none is left; assemble it if this rank finished it."""
        import torch

        world, key = self.world, f"scene{i}"
        o = self.options
        source = _open_scene(job["scene"], self.bundle, o.key, o.nodata, o.mask, o.resample_bands)
        check_clean_up(source, self.options)
        wins = list(source.grid.windows(self.options.window))  # options.window is capped
        parts = PartFolder(job["outputs"].map, job["job_id"])

        def units():
            while world.failed(key) is None and world.failed() is None:
                j = world.claim(key)
                if j >= len(wins):
                    return
                yield j, (None if parts.done(j) else wins[j])

        with torch.inference_mode():
            for j, inner, outer, raw in _prefetch(source, units(), self.classify.halo):
                if raw is not None:
                    self._unit(parts, j, raw, source.nodata, inner, outer)
                if world.count(f"{key}/done") == len(wins):
                    self._assemble(i, job, source, wins, parts)

    def _part(self, parts: PartFolder, j: int, source, win) -> dict:
        """Unit ``j``'s arrays; a part that does not verify (damaged, cut short, deleted) is computed again here."""
        part = parts.load(j)
        if part is None:
            console.warn(f"{parts.map.name}: part {j} did not verify; computing it again")
            for _, inner, outer, raw in _prefetch(source, [(j, win)], self.classify.halo):
                self._unit(parts, j, raw, source.nodata, inner, outer)
            part = parts.load(j)
        if part is None:
            raise HsiclsError(f"{parts.dir}: part {j} of {parts.map.name} does not verify even after computing it again")
        return part

    def _unit(self, parts: PartFolder, j: int, raw, nodata, inner, outer) -> None:
        cls, conf, probs, n = self.classify(raw, nodata, inner, outer)
        counts = np.bincount(cls.ravel(), minlength=len(self.table.names) + 1)[: len(self.table.names) + 1]
        parts.commit(j, self.lut[cls], conf if self.classify.need_probs else None, probs, counts, n)
        self.pixels += n

    def _assemble(self, i: int, job: dict, source, wins: list, parts: PartFolder) -> None:
        from rasterio.windows import Window

        t = time.perf_counter()
        outputs, k = job["outputs"], self.classify.k
        counts, classified = np.zeros(len(self.table.names) + 1, np.int64), 0
        o = self.options
        writer = map_writer(outputs, source, self.table, k, o, self.overwrite)
        parts.check_owner()
        with writer:
            for j, (r0, r1, c0, c1) in enumerate(wins):
                part = self._part(parts, j, source, wins[j])
                writer.write(Window(c0, r0, c1 - c0, r1 - r0), part["classes"], part.get("confidence"), part.get("probabilities"))
                counts += part["counts"]
                classified += int(part["n"])
            if classified == 0:
                raise InputError(f"{source.path}: every pixel is nodata; no map written")
        counts = cleaned_counts(writer, self.table, counts)
        write_sidecars(outputs, self.table)
        parts.remove()
        now = time.perf_counter()
        summary = _summary(source, outputs, self.table, counts, classified, now - self.t0, self.runner, o)
        summary.update(temperature=self.bundle.temperature, assembly_seconds=now - t, assembled_by=self.world.rank)
        self.world.put(f"summary/{i}", json_safe(summary))
        console.info(f"rank {self.world.rank}: assembled {outputs.map} in {now - t:.2f} s")


def predict_maps_distributed(
    world: World, scenes: list, bundle_path, template: MapOutputs, options: MapOptions, overwrite: bool, many: bool
) -> dict | None:
    """predict-map on this rank of ``world``; rank 0 returns the summary (one map: the map's summary,
    several: ``{"maps", "skipped", "failed"}``), each with ``world_size`` and ``ranks``; others ``None``."""
    options.validate()
    options = options.replace(window=min(options.window, UNIT_WINDOW))
    tune_allocator()
    scenes, bundle_path = [Path(p) for p in scenes], Path(bundle_path)
    if not world.is_main:
        console.set_verbosity(-1)
    checked: dict = {}  # rank 0: the bundle its check loaded, used again instead of a second load
    with contextlib.ExitStack() as held:  # rank 0 holds the part folders' locks to the end of the run
        plan = world.broadcast(
            _plan(world, scenes, bundle_path, template, options, overwrite, many, held, checked) if world.is_main else None
        )
        if plan["error"]:
            raise (HsiclsError if world.is_main else RankFailed)(plan["error"])
        return _run_plan(world, plan, checked.get("bundle", bundle_path), template, options, overwrite, many)


def _run_plan(world: World, plan: dict, bundle, template: MapOutputs, options: MapOptions, overwrite, many):
    rank = _RankJob(world, bundle, template, options, overwrite)
    for i, job in enumerate(plan["jobs"]):
        try:
            rank.scene(i, job)
        except HsiclsError as exc:
            if isinstance(exc, RankFailed) or world.failed(f"scene{i}") or world.failed():
                if not many:
                    raise RankFailed(str(exc)) from None
                continue
            first = world.fail(str(exc), f"scene{i}" if many else "run")
            if not many:
                raise exc if first else RankFailed(str(exc)) from None
    seconds = time.perf_counter() - rank.t0
    world.barrier()
    ranks = world.gather({"rank": world.rank, "pixels": int(rank.pixels), "seconds": seconds})
    return _result(world, plan, many, ranks) if world.is_main else None


def _result(world: World, plan: dict, many: bool, ranks: list) -> dict:
    if world.failed():
        raise RankFailed(world.failed())
    maps, failed = [], list(plan["failed"])
    for i, job in enumerate(plan["jobs"]):
        s = world.get(f"summary/{i}")
        if s is not None:
            maps.append(s)
        else:
            msg = world.failed(f"scene{i}") or "not assembled"
            console.error(f"{Path(job['scene']).name}: {msg}")
            failed.append({"scene": str(job["scene"]), "error": msg})
    extra = {"world_size": world.size, "ranks": ranks}
    if not many:
        return {**maps[0], **extra}
    console.info(f"{len(maps)} maps written, {len(plan['skipped'])} skipped, {len(failed)} failed ({world.size} ranks)")
    return {"maps": maps, "skipped": plan["skipped"], "failed": failed, **extra}
