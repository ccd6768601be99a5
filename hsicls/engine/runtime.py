"""Process-level performance settings for CPU inference and training.

glibc returns large freed blocks to the OS (``munmap``/trim) and then faults fresh pages in on
the next batch; with activation buffers of tens of MB per batch that costs more than the
convolutions. Raising the mmap and trim thresholds keeps those buffers in the heap (measured
here: a 1x1 convolution of a 1024-patch batch went from 168 ms to 64 ms).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = {"malloc": False}


def tune_allocator(threshold: int = 1 << 30) -> bool:
    """Raise glibc's malloc trim/mmap thresholds (no-op elsewhere). Returns True if applied."""
    if _done["malloc"] or not sys.platform.startswith("linux"):
        return _done["malloc"]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, threshold) == 1
    except (OSError, AttributeError):
        ok = False
    _done["malloc"] = ok
    return ok


# --------------------------------------------------------------------------- device and precision policy
def resolve_device(name: str):
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is a clear error."""
    import torch

    from hsicls.errors import HsiclsError, OptionError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise OptionError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise HsiclsError("--device cuda was requested but no CUDA GPU is available")
    return torch.device(name)


def uses_bf16(precision: str, device) -> bool:
    """bf16 *autocast*: on a GPU under ``auto`` or ``bf16`` (training everywhere under ``bf16``). On
    the CPU, inference in bf16 runs a bf16 copy of the network instead (:func:`cpu_inference_mode`)."""
    from hsicls.errors import OptionError

    if precision not in ("auto", "fp32", "bf16"):
        raise OptionError(f"--precision must be auto, fp32 or bf16, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16_cpu() -> bool:
    """The CPU computes bf16 natively: AMX-BF16 tiles or AVX512-BF16 dot products (elsewhere oneDNN
    emulates bf16, measured 8x slower than fp32 on an AVX2-only CPU)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


# Training under ``--precision auto`` on a CPU with native bf16: bf16 autocast when True. Measured on an AMD EPYC with
# AVX512-BF16 (bench/train_step.py; bench/RESULTS.md, "Training at the field's speed"): training steps md2f-mamba
# 1.29x, ssftt 1.32x, spectral-cnn 1.09x samples/s; Indian Pines 5 %, 5 seeds, 100 epochs, --ema 0.99: OA
# 97.15 +- 0.67 against fp32's 97.08 +- 0.68 (within one std), each seed 1.15x faster end to end.
CPU_BF16_TRAINING = True


def training_precision(precision: str, device) -> tuple[bool, str]:
    """``(bf16 autocast?, why)`` for training: ``--precision bf16`` / ``fp32`` as asked; ``auto``: bf16 on a GPU,
    and on a CPU that computes bf16 natively (AMX-BF16 or AVX512-BF16; emulated bf16 is several times slower than
    fp32), else fp32. The weights, the optimiser state and the loss stay fp32 (autocast), so a bundle is the same
    kind of file either way; the choice is recorded in it."""
    bf16 = uses_bf16(precision, device)
    if precision != "auto":
        return bf16, f"--precision {precision}"
    if device.type != "cpu":
        return bf16, f"auto: bf16 autocast on {device.type}"
    if not native_bf16_cpu():
        return False, "auto: fp32, this CPU has no native bf16 (AMX-BF16 or AVX512-BF16)"
    if not CPU_BF16_TRAINING:
        return False, "auto: fp32 for training on the CPU"
    native = " and ".join(sorted(cpu_flags() & {"amx_bf16", "avx512_bf16"}))
    return True, f"auto: bf16 autocast, native bf16 on this CPU ({native})"


def cpu_inference_mode(precision: str, device, bf16_error: float | None) -> str:
    """How a CPU runs inference: ``fp32``; ``bf16`` (a bf16 copy of the network, no check: ``--precision
    bf16``); ``bf16-checked`` (the bf16 copy, pixels with a narrow top-2 margin recomputed in fp32, so
    classes equal fp32's). ``auto`` is ``bf16-checked`` where the CPU has native bf16 and the bundle
    records its bf16 error bound (bundles trained before it: fp32), else fp32."""
    uses_bf16(precision, device)  # validates the name
    if device.type != "cpu" or precision == "fp32":
        return "fp32"
    if precision == "bf16":
        return "bf16"
    return "bf16-checked" if bf16_error is not None and native_bf16_cpu() else "fp32"


def inference_batch_size(batch_size: int | None, device) -> int:
    """Patches per forward pass for inference: the user's choice, else 256 on the CPU (smaller
    activations; predict-map measured about 1.07x faster than with 1,024 and with a lower memory
    peak) and 4,096 on a GPU."""
    if batch_size is None:
        return 4096 if device.type == "cuda" else 256
    return batch_size


def autocast(device, use_bf16: bool):
    """bf16 autocast on ``device`` when ``use_bf16``, else a no-op context."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
