"""Batched inference: the one loop that runs patches through a model (evaluate, predict-map,
validation during training, benchmarks).

:class:`Runner` holds the resolved device, precision and batch size; :meth:`Runner.logits`
yields ``(slice, logits)`` per batch of pixels, each batch's patches gathered on the device from
one padded tensor (:func:`hsicls.engine.patches.gather_patches`), under bf16 autocast when asked.

``bf16-checked`` on the CPU (``--precision auto``) runs a bf16 copy of the network and recomputes in
fp32 the pixels whose bf16 top-2 margin is too narrow to trust. Those pixels are *pooled* across
batches (:class:`_Recheck`) and recomputed in batches of a few fixed sizes (the batch size and its
halves down to an eighth), so oneDNN never sees a new input shape: a new shape builds new
convolution primitives, which cost a tiny batch about as much as a whole one. Whether the checked
bf16 path is faster at all, for this bundle on this CPU, is decided by a timed probe on the job's
first full batch (:meth:`Runner._probe`); ``auto`` runs fp32 otherwise.
"""

from __future__ import annotations

import copy
import time
import weakref
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from hsicls.engine.patches import gather_patches
from hsicls.engine.runtime import autocast, cpu_inference_mode, inference_batch_size, resolve_device, uses_bf16

_BF16_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# A bf16 copy's logits differ from fp32's by at most ``error x max|logit|`` per pixel (``error``
# measured on the validation pixels at train time, :func:`bf16_error`). Two logits then move
# apart by at most twice that; a pixel whose bf16 top-2 margin is below ``RECHECK_FACTOR x error x
# max|logit|`` is recomputed in fp32 (a factor 2 of safety over the worst validation pixel).
RECHECK_FACTOR = 4.0

# The timed probe of ``--precision auto``: the checked bf16 path is kept when its estimated time per
# batch (bf16 batch + the re-checked share of an fp32 batch) is below PROBE_MARGIN x the fp32 batch's
# (10 % to spare for the pooled batches' padding and the timer's noise). Jobs of fewer than
# PROBE_MIN_BATCHES batches run fp32 without a probe: the probe's extra passes (about three batches)
# could not be repaid by the at most ~30 % that bf16 saves.
PROBE_MARGIN = 0.9
PROBE_MIN_BATCHES = 16


def bf16_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A bf16 copy of ``model`` in eval mode (cached per model; the merged inference network of
    md2f-mamba folds its BatchNorms in its forward pass, in bf16 too)."""
    low = _BF16_COPIES.get(model)
    if low is None:
        low = _BF16_COPIES[model] = copy.deepcopy(model).to(torch.bfloat16).eval()
    return low


@dataclass(frozen=True)
class Runner:
    device: torch.device
    use_bf16: bool  # bf16 autocast (GPUs)
    batch_size: int
    cpu_mode: str = "fp32"  # fp32 | bf16 | bf16-checked (runtime.cpu_inference_mode)
    bf16_error: float | None = None  # the bundle's relative bf16 error (bf16-checked)
    probe: bool = False  # bf16-checked under --precision auto: a timed probe may still choose fp32
    stats: dict = field(default_factory=lambda: {"pixels": 0, "rechecked": 0}, compare=False)
    # what auto decided and why ({"mode", "reason", timings}); filled by resolve and the probe
    choice: dict = field(default_factory=dict, compare=False)
    compile: str = "off"  # auto | on | off: torch.compile the network (CPU; hsicls.engine.compiled)
    job_pixels: int | None = None  # pixels the whole job runs, when known (what a compilation must repay)
    # the network in use once decided: {"low": compiled or bf16 callable or None (eager fp32), "err": its bound}
    net: dict = field(default_factory=dict, compare=False)

    @classmethod
    def resolve(
        cls,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int | None = None,
        bf16_error: float | None = None,
        job_pixels: int | None = None,
        compile: str = "off",
    ) -> Runner:
        """The policy for ``device`` and ``precision``; ``job_pixels`` (the pixels the job will run, when
        known) decides whether ``auto``'s timed probe can repay itself (:data:`PROBE_MIN_BATCHES`) and, with
        ``compile`` ``auto``, whether a compilation can."""
        from hsicls.errors import OptionError

        if compile not in ("auto", "on", "off"):
            raise OptionError(f"--compile must be auto, on or off, got {compile!r}")
        dev = resolve_device(device)
        mode = cpu_inference_mode(precision, dev, bf16_error)
        size = inference_batch_size(batch_size, dev)
        choice = {"mode": mode, "reason": _static_reason(precision, dev, mode, bf16_error)}
        probe = precision == "auto" and mode == "bf16-checked"
        if probe and job_pixels is not None and job_pixels < PROBE_MIN_BATCHES * size:
            mode, probe = "fp32", False
            choice = {
                "mode": mode,
                "reason": f"{job_pixels} px is under {PROBE_MIN_BATCHES} batches: too small to repay a bf16 probe",
            }
        if probe:
            choice["reason"] = "pending: a timed probe on the first full batch decides between bf16-checked and fp32"
        if dev.type != "cpu":
            compile = "off"  # GPUs: eager (the feed, not the network, bounds a GPU map: bench/RESULTS.md)
        return cls(
            dev, uses_bf16(precision, dev), size, mode, bf16_error, probe, choice=choice, compile=compile, job_pixels=job_pixels
        )

    def on(self, device: torch.device) -> Runner:
        """The same policy on another device (a rank's own GPU)."""
        return Runner(
            device, self.use_bf16, self.batch_size, self.cpu_mode, self.bf16_error, self.probe, choice=dict(self.choice),
            compile=self.compile if device.type == "cpu" else "off", job_pixels=self.job_pixels,
        )  # fmt: skip

    @property
    def mode(self) -> str:
        """The CPU mode in force: the probe's decision once made."""
        return self.choice.get("mode", self.cpu_mode)

    @property
    def precision(self) -> str:
        if self.device.type == "cpu":
            return self.mode
        return "bf16" if self.use_bf16 else "fp32"

    @property
    def precision_reason(self) -> str | None:
        return self.choice.get("reason")

    @property
    def rechecked_fraction(self) -> float | None:
        n = self.stats["pixels"]
        return self.stats["rechecked"] / n if (self.mode == "bf16-checked" or self.compiled) and n else None

    @property
    def compiled(self) -> bool:
        """The network ran compiled (``--compile``)."""
        return bool(self.choice.get("compiled"))

    @property
    def compile_reason(self) -> str | None:
        return self.choice.get("compile_reason")

    def _fp32(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, self.use_bf16):
            return model(x).float()

    def _bf16(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return bf16_copy(model)(x.to(torch.bfloat16)).float()

    def _uncertain(self, out: torch.Tensor, err: float | None = None) -> torch.Tensor:
        """Indices of the rows of logits ``out`` (n, K) whose class a relative error ``err`` (default: the
        bundle's bf16 bound) could change."""
        err = self.bf16_error if err is None else err
        top2 = out.topk(min(2, out.shape[1]), dim=1).values
        margin = top2[:, 0] - top2[:, -1]
        return torch.nonzero(margin <= RECHECK_FACTOR * err * out.abs().amax(1)).flatten()

    def _probe(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Time fp32 and the bf16 copy on one full batch ``x`` (a warm-up each, then two interleaved
        rounds; the fastest of each), estimate the checked path's time from this batch's share of
        uncertain pixels, and fix the mode. Returns the batch's fp32 logits (exact whatever is chosen)."""
        t32, t16 = [], []
        ref = self._fp32(model, x)
        low = self._bf16(model, x)
        for _ in range(2):
            t = time.perf_counter()
            ref = self._fp32(model, x)
            t32.append(time.perf_counter() - t)
            t = time.perf_counter()
            low = self._bf16(model, x)
            t16.append(time.perf_counter() - t)
        share = self._uncertain(low).numel() / max(1, x.shape[0])
        f32, b16 = min(t32), min(t16)
        checked = b16 + share * f32
        mode = "bf16-checked" if checked < PROBE_MARGIN * f32 else "fp32"
        verdict = "faster" if mode == "bf16-checked" else f"not {1 / PROBE_MARGIN:.2f}x faster"
        self.choice.update(
            mode=mode,
            reason=f"probe: bf16-checked {checked * 1e3:.0f} ms/batch (bf16 {b16 * 1e3:.0f} + {100 * share:.1f} % re-checked) "
            f"vs fp32 {f32 * 1e3:.0f} ms/batch: {verdict}",
            probe_ms={"fp32": round(f32 * 1e3, 2), "bf16": round(b16 * 1e3, 2), "rechecked_share": share},
        )
        self.stats["pixels"] += x.shape[0]
        return ref

    def _batches(self, padded, rows, cols, patch_size) -> Iterator[tuple[slice, torch.Tensor]]:
        for start in range(0, rows.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            yield sl, gather_patches(padded, rows[sl], cols[sl], patch_size)

    @torch.no_grad()
    def logits(
        self, model: torch.nn.Module, padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """``(slice of the pixel list, logits (n, K) float32)`` for the pixels ``(rows, cols)`` of
        ``padded`` ``(C, H + P - 1, W + P - 1)`` (unpadded coordinates), batch by batch, in order."""
        model.eval()
        batches = self._batches(padded, rows, cols, patch_size)
        eager = self.compile == "off" or self.net.get("decided") and self.net.get("low") is None
        if self.device.type != "cpu" or (self.mode == "fp32" and eager):
            for sl, x in batches:
                yield sl, self._fp32(model, x)
            return
        if self.mode == "bf16":
            for sl, x in batches:
                out = self._bf16(model, x)
                self.stats["pixels"] += out.shape[0]
                yield sl, out
            return
        yield from self._checked(model, batches)

    def _checked(self, model, batches) -> Iterator[tuple[slice, torch.Tensor]]:
        """A fast network (the bf16 copy, or a compiled network) gives the logits; its uncertain pixels are
        recomputed in eager fp32 through the pool; a batch is yielded once all its pixels are final, so
        batches leave in order. The first full batch decides the network (:meth:`_decide`)."""
        pool = _Recheck(model, self._fp32, self.batch_size, self.stats)
        waiting: deque = deque()
        for sl, x in batches:
            if not self.net.get("decided") and x.shape[0] == self.batch_size:
                entry = _Entry(sl, self._decide(model, x))  # exact fp32 logits of this batch
                if self.net.get("low") is None and self.mode == "fp32":  # eager fp32 for the rest of the job
                    yield from waiting_done(pool, waiting, final=True)
                    yield sl, entry.out
                    for sl2, x2 in batches:
                        yield sl2, self._fp32(model, x2)
                    return
            else:
                low, err = self._low(model)
                if low is None:  # fp32, its network not decided yet (a batch smaller than a whole one)
                    entry = _Entry(sl, self._fp32(model, x))
                else:
                    entry = _Entry(sl, low(x))
                    self.stats["pixels"] += x.shape[0]
                    idx = self._uncertain(entry.out, err)
                    if idx.numel():
                        pool.add(entry, x[idx], idx)
            waiting.append(entry)
            yield from waiting_done(pool, waiting, final=False)
        yield from waiting_done(pool, waiting, final=True)

    def _low(self, model) -> tuple:
        """``(fast network, its relative error bound)`` in force (before the decision: the bf16 copy under
        bf16-checked, None under fp32)."""
        if self.net.get("decided"):
            return self.net.get("low"), self.net.get("err")
        if self.mode == "bf16-checked":
            return (lambda x: self._bf16(model, x)), self.bf16_error
        return None, None

    def _decide(self, model, x: torch.Tensor) -> torch.Tensor:
        """On the job's first full batch ``x``: the bf16 probe (auto), then whether to compile (``--compile``)
        and the compiled network's error bound. Returns ``x``'s eager fp32 logits."""
        from hsicls import console
        from hsicls.engine import compiled as comp

        ref, per_batch = None, None
        if self.probe and "probe_ms" not in self.choice:
            ref = self._probe(model, x)
            per_batch = self.choice["probe_ms"]["bf16" if self.mode == "bf16-checked" else "fp32"] / 1e3
        else:
            self.stats["pixels"] += x.shape[0]
        if ref is None or per_batch is None:
            t = time.perf_counter()
            ref = self._fp32(model, x)
            per_batch = time.perf_counter() - t if per_batch is None else per_batch
        low, err = (lambda v: self._bf16(model, v), self.bf16_error) if self.mode == "bf16-checked" else (None, None)
        if self.compile != "off":
            bf16 = self.mode == "bf16-checked"
            net, dtype = (bf16_copy(model), torch.bfloat16) if bf16 else (model, torch.float32)
            batches = -(-(self.job_pixels or 0) // self.batch_size)
            estimate = per_batch * batches
            expected = comp.expected_seconds(comp.signature(net, x, dtype))
            if self.compile == "auto" and not bf16:  # measured: a compiled fp32 network gains nothing end to end
                self.choice.update(
                    compiled=False,
                    compile_reason="eager: under auto only the bf16 path is compiled (compiled fp32 measured 0.95-0.96x "
                    "of eager end to end on 512 x 512 px, bench/RESULTS.md); --compile on compiles fp32 too",
                )
            elif self.compile == "on" or estimate >= comp.COMPILE_REPAY * expected:
                c, seconds = comp.try_compile(net, x, self.batch_size, dtype, console.warn)
                if c is not None:
                    out = c(x)
                    scale = ref.abs().amax(1).clamp_min(1e-12)
                    measured = float(((out - ref).abs().amax(1) / scale).max())
                    err = max(err or 0.0, 2 * measured, 1e-6)  # twice the difference seen on this batch
                    low = c
                    self.choice.update(
                        compiled=True,
                        compile_reason=f"compiled ({'bf16' if bf16 else 'fp32'}) in {seconds:.1f} s: job ~{estimate:.0f} s "
                        f"eager vs expected compilation {expected:.0f} s; logits within {measured:.1e} of eager, pixels "
                        f"closer than that to a tie recomputed eagerly",
                    )
                else:
                    self.choice.update(compiled=False, compile_reason="compilation failed: eager")
            else:
                self.choice.update(
                    compiled=False,
                    compile_reason=f"eager: the job (~{estimate:.0f} s) is under {comp.COMPILE_REPAY:g} x the expected "
                    f"compilation time ({expected:.0f} s)",
                )
        self.net.update(decided=True, low=low, err=err)
        return ref

    def all_logits(self, model, padded, rows, cols, patch_size) -> torch.Tensor:
        """Logits ``(N, K)`` float32 of every pixel ``(rows, cols)``, on the device."""
        parts = [logits for _, logits in self.logits(model, padded, rows, cols, patch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, 0, device=padded.device)

    def classes(self, model, padded, rows, cols, patch_size) -> torch.Tensor:
        """0-based class index ``(N,)`` of every pixel ``(rows, cols)``."""
        out = torch.empty(rows.shape[0], dtype=torch.long, device=padded.device)
        for sl, logits in self.logits(model, padded, rows, cols, patch_size):
            out[sl] = logits.argmax(1)
        return out


def _static_reason(precision: str, device: torch.device, mode: str, bf16_error: float | None) -> str:
    """Why :func:`hsicls.engine.runtime.cpu_inference_mode` chose ``mode`` (before any probe)."""
    if device.type != "cpu":
        return f"--precision {precision} on {device.type}"
    if precision != "auto":
        return f"--precision {precision}"
    if mode == "fp32":
        if bf16_error is None:
            return "auto: the bundle records no bf16 error bound, or probabilities are written (fp32 keeps them exact)"
        return "auto: this CPU has no native bf16 (AMX-BF16 or AVX512-BF16)"
    return "auto: native bf16 and the bundle's bf16 error bound"


class _Entry:
    """One batch in flight: its slice, its logits (n, K), how many of its pixels await fp32."""

    __slots__ = ("sl", "out", "left")

    def __init__(self, sl: slice, out: torch.Tensor):
        self.sl, self.out, self.left = sl, out, 0


class _Recheck:
    """The pool of uncertain pixels: their patches, waiting to be recomputed in fp32 in batches of a
    few fixed sizes (``size`` and its halves down to ``size / 8``), whatever the count per batch."""

    def __init__(self, model: torch.nn.Module, fp32, size: int, stats: dict):
        self.model, self.fp32, self.size, self.stats = model, fp32, size, stats
        self.buckets = sorted({max(1, size >> s) for s in range(4)})
        self.x: list[torch.Tensor] = []
        self.dst: list[tuple[_Entry, torch.Tensor]] = []
        self.n = 0
        self.shapes: Counter = stats.setdefault("recheck_batches", Counter())  # batch sizes run in fp32

    def add(self, entry: _Entry, x: torch.Tensor, idx: torch.Tensor) -> None:
        self.x.append(x)
        self.dst.append((entry, idx))
        self.n += idx.numel()
        entry.left += idx.numel()
        self.stats["rechecked"] += idx.numel()

    def flush(self, final: bool) -> None:
        """Recompute every whole batch of the pool (``final``: all of it, the rest padded to a bucket)."""
        todo = self.n if final else self.n // self.size * self.size
        if todo == 0:
            return
        x = torch.cat(self.x) if len(self.x) > 1 else self.x[0]
        ys = []
        for start in range(0, todo, self.size):
            blk = x[start : min(todo, start + self.size)]
            m = blk.shape[0]
            b = next(b for b in self.buckets if b >= m)
            if b > m:  # zero patches fill the batch; each pixel's logits depend on its own patch only
                blk = torch.cat([blk, blk.new_zeros((b - m,) + tuple(blk.shape[1:]))])
            self.shapes[b] += 1
            ys.append(self.fp32(self.model, blk)[:m])
        y = torch.cat(ys) if len(ys) > 1 else ys[0]
        off, keep_x, keep_dst = 0, [], []
        for part, (entry, idx) in zip(self.x, self.dst):
            k = max(0, min(idx.numel(), todo - off))
            if k:
                entry.out[idx[:k]] = y[off : off + k]
                entry.left -= k
            if k < idx.numel():
                keep_x.append(part[k:])
                keep_dst.append((entry, idx[k:]))
            off += idx.numel()
        self.x, self.dst, self.n = keep_x, keep_dst, self.n - todo


def waiting_done(pool: _Recheck, waiting: deque, final: bool) -> Iterator[tuple[slice, torch.Tensor]]:
    """Run the pool's whole batches (all of it when ``final``), then yield the finished batches at the
    head of ``waiting``, in order."""
    pool.flush(final)
    while waiting and waiting[0].left == 0:
        e = waiting.popleft()
        yield e.sl, e.out


@torch.no_grad()
def bf16_error(model: torch.nn.Module, padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int) -> float:
    """The largest relative error of a bf16 copy's logits on these pixels (validation pixels at train
    time): ``max over pixels of max_k |bf16_k - fp32_k| / max_k |fp32_k|``, on the CPU."""
    model, padded, rows, cols = model.cpu().eval(), padded.cpu(), rows.cpu(), cols.cpu()
    worst = 0.0
    for start in range(0, rows.shape[0], 256):
        x = gather_patches(padded, rows[start : start + 256], cols[start : start + 256], patch_size)
        ref = model(x).float()
        low = bf16_copy(model)(x.to(torch.bfloat16)).float()
        scale = ref.abs().amax(1).clamp_min(1e-12)
        worst = max(worst, float(((low - ref).abs().amax(1) / scale).max()))
    return worst
