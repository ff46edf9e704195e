"""Which precision an encoder runs in when the user does not say: measured on this machine, never assumed.

Machines differ from one day to the next (the same benchmark gave bf16 autocast 1.7x fp32 on an EPYC with
``avx512_bf16`` and 0.20x on an avx2-only EPYC), so ``dtype=auto`` (the default) decides per process:

* CUDA: bf16 autocast where the GPU supports bf16, else fp16 (both within 0.001 mAP of fp32 on XQuAD-R).
* CPU with bf16 instructions (``avx512_bf16`` / ``amx_bf16``): a probe of about 0.2 s times encoder-shaped matrix
  products in fp32 and under bf16 autocast; bf16 is chosen if it is at least ``MIN_GAIN`` times faster. The probe
  runs once per machine (CPU, its flags and the torch version) and its figure is kept in the cache
  (``<cache>/precision.json``; delete it to probe again): on a busy host one probe gave anything from 0.3x to 42x,
  and a precision decided afresh by every process put the same model under two labels on one machine.
* Any other CPU (no bf16 instructions, so bf16 would be emulated, or a probe that found no gain): int8 on ONNX
  Runtime (:mod:`.onnx_runtime`), which meets the accuracy bar (``ACCURACY_BAR``, the largest change of
  XQuAD-R mAP over the three settings; README, Results) and runs about 1.5x fp32 even on avx2 without VNNI;
  fp32 when onnxruntime is not installed.

fp32 is the reference precision: it is never shown in a result's label, every other precision is
(``e5-small[dtype=int8]``), so results of two precisions never share a file. The choice and its reason are recorded
in the result (``model.metadata.precision``) and printed by ``run``.
"""

from __future__ import annotations

import datetime
import functools
import json
import platform
import time
from pathlib import Path

from ..errors import XlirError
from ..fileio import read_json, write_atomic
from ..suites.download import cache_dir

MIN_GAIN = 1.3
ACCURACY_BAR = 0.005  # the largest |mAP(precision) - mAP(fp32)| on XQuAD-R a precision may cost to be chosen by auto
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
STORED = "precision.json"  # in the cache root: the bf16 probe's figure per machine


@functools.cache
def cpu_info() -> dict:
    """The CPU's model name and the instruction-set flags that matter for inference (Linux /proc/cpuinfo)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": name, "flags": [f for f in SHOWN_FLAGS if f in flags]}


def probe_cpu_bf16(repeats: int = 7) -> float:
    """fp32 time / bf16-autocast time of encoder-shaped products (256 tokens x 384 -> 1536 -> 384) on this CPU.

    On one thread, the two taking turns, best of ``repeats`` each: the ratio is a property of the core's bf16 and
    fp32 units, and on all cores beside other work (training on the same 2 cores) the threads' waits for each other
    swung it from 0.3x to 42x between processes, where one thread gave 2.7x-3.5x and ran 10x shorter."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _probe(torch, repeats)
    finally:
        torch.set_num_threads(threads)


def _probe(torch, repeats: int) -> float:
    torch.manual_seed(0)
    x = torch.randn(256, 384)
    up, down = torch.nn.Linear(384, 1536), torch.nn.Linear(1536, 384)

    def timed(autocast: bool) -> float:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            start = time.perf_counter()
            for _ in range(4):
                down(torch.nn.functional.gelu(up(x)))
            return time.perf_counter() - start

    timed(False), timed(True)  # warm-up: the first call of each pays for kernel selection
    best = {False: float("inf"), True: float("inf")}
    for _ in range(repeats):
        for autocast in (False, True):
            best[autocast] = min(best[autocast], timed(autocast))
    return best[False] / best[True]


def _machine_key(info: dict) -> str:
    import torch

    return f"{info['model']} | {' '.join(info['flags'])} | torch {torch.__version__}"


def stored_probes() -> dict[str, dict]:
    """The probe figures kept in the cache, by machine key (CPU, flags, torch); {} when there are none or the file
    is damaged (it is then written anew by the next probe)."""
    try:
        stored = read_json(cache_dir() / STORED)
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict):
        return {}
    return {
        key: entry for key, entry in stored.items()
        if isinstance(entry, dict) and isinstance(entry.get("gain"), (int, float)) and entry["gain"] > 0
    }  # fmt: skip


def cpu_bf16_gain(info: dict) -> tuple[float, str]:
    """(bf16 gain over fp32, where the figure comes from): this machine's stored probe, else a probe now, stored
    (a cache that cannot be written only means the next process probes again)."""
    path, key = cache_dir() / STORED, _machine_key(info)
    stored = stored_probes()
    entry = stored.get(key)
    if entry is not None:
        when = entry.get("probed", "an earlier run")
        return float(entry["gain"]), f"in this machine's probe of {when}, kept in {path}"
    gain = probe_cpu_bf16()
    today = datetime.date.today().isoformat()
    try:
        write_atomic(path, json.dumps({**stored, key: {"gain": round(gain, 3), "probed": today}}, indent=1) + "\n")
    except (OSError, XlirError):
        return gain, "in a probe just now (not kept: the cache cannot be written)"
    return gain, f"in a probe just now, kept in {path}"


@functools.cache
def choose(device: str) -> tuple[str, str]:
    """(dtype, reason) for ``dtype=auto`` on ``device``."""
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(torch.device(device))
        if torch.cuda.is_bf16_supported():
            return "bf16", f"auto: {name} supports bf16"
        return "fp16", f"auto: {name} has no bf16; fp16"
    info = cpu_info()
    if any(f in info["flags"] for f in BF16_FLAGS):
        gain, where = cpu_bf16_gain(info)
        has = "/".join(f for f in BF16_FLAGS if f in info["flags"])
        why = f"auto: {info['model']} has {has}; bf16 ran {gain:.2f}x fp32 (needs {MIN_GAIN}x) {where}"
        if gain >= MIN_GAIN:
            return "bf16", why
    else:
        why = f"auto: {info['model']} has no bf16 instructions ({', '.join(info['flags']) or 'no flags read'})"
    from . import onnx_runtime

    missing = onnx_runtime.available()
    if missing:
        return "fp32", f"{why}; int8 needs ONNX Runtime and {missing}"
    return "int8", f"{why}; int8 on ONNX Runtime (within {ACCURACY_BAR} mAP of fp32 on XQuAD-R)"


def check_runnable(dtype: str, device: str) -> str | None:
    """Why ``dtype`` cannot run on ``device`` (one line), or None."""
    if dtype == "int8" and device != "cpu":
        return "dtype=int8 (ONNX Runtime on CPU) runs on CPU only; use bf16 or fp16 on CUDA"
    if dtype == "bf16" and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_bf16_supported():
            return f"dtype=bf16: {torch.cuda.get_device_name(torch.device(device))} has no bf16; use fp16 or auto"
    return None
