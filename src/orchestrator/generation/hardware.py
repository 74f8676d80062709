"""GPU hardware metrics through nvidia-ml-py (pynvml): name, memory, power and energy.

A background thread samples total power (W) and used memory of the job's GPUs once a second;
energy (Wh) is the trapezoidal integral of power over time. Without a GPU or without pynvml
every value is None, and nothing raises: hardware metrics must never fail a run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

# One reading: (total power in W over the job's GPUs, total used memory in bytes).
Reading = tuple[float, float]
NULL_HARDWARE = {
    "gpu_name": None,
    "gpu_count": None,
    "gpu_memory_total_gb": None,
    "gpu_memory_peak_gb": None,
    "energy_wh": None,
    "power_avg_w": None,
    "power_peak_w": None,
    "model_disk_gb": None,
}


def trapezoid_wh(samples: list[tuple[float, float]]) -> float:
    """Energy (Wh) from (time_s, power_w) samples by the trapezoidal rule."""
    joules = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))
    return joules / 3600.0


class _Nvml:
    """The GPUs this job sees (CUDA_VISIBLE_DEVICES, by index or UUID), read through pynvml."""

    def __init__(self):
        import pynvml

        pynvml.nvmlInit()
        self.nv = pynvml
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        else:
            ids = [v.strip() for v in visible.split(",") if v.strip()]
            self.handles = [
                pynvml.nvmlDeviceGetHandleByUUID(v) if not v.isdigit() else pynvml.nvmlDeviceGetHandleByIndex(int(v))
                for v in ids
            ]
        if not self.handles:
            raise RuntimeError("no GPU visible")

    def static(self) -> dict:
        name = self.nv.nvmlDeviceGetName(self.handles[0])
        total = sum(self.nv.nvmlDeviceGetMemoryInfo(h).total for h in self.handles)
        return {
            "gpu_name": name.decode() if isinstance(name, bytes) else name,
            "gpu_count": len(self.handles),
            "gpu_memory_total_gb": total / 1e9,
        }

    def read(self) -> Reading:
        power = sum(self.nv.nvmlDeviceGetPowerUsage(h) for h in self.handles) / 1000.0  # mW → W
        used = sum(self.nv.nvmlDeviceGetMemoryInfo(h).used for h in self.handles)
        return power, float(used)

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


class HardwareMonitor:
    """`with HardwareMonitor() as hw: ...` then `hw.metrics()`. `read` and `static` replace NVML
    (tests pass fakes); `interval` is the sampling period in seconds."""

    def __init__(
        self,
        read: Callable[[], Reading] | None = None,
        static: dict | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interval, self.clock = interval, clock
        self.samples: list[tuple[float, float]] = []  # (t, power_w)
        self.peak_mem: float | None = None
        self._nvml: _Nvml | None = None
        self._static = static or {}
        self._read = read
        if read is None:
            try:
                self._nvml = _Nvml()
                self._read, self._static = self._nvml.read, self._nvml.static()
            except Exception:  # noqa: BLE001 -- no pynvml, no driver, no GPU: metrics stay None
                self._read = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            power, mem = self._read()
        except Exception:  # noqa: BLE001 -- a failed reading is a missing sample, not a crash
            return
        self.samples.append((self.clock(), float(power)))
        self.peak_mem = mem if self.peak_mem is None else max(self.peak_mem, mem)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> HardwareMonitor:
        if self._read is not None and self._thread is None:
            self._sample()
            self._thread = threading.Thread(target=self._loop, name="hardware-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()  # the closing edge of the last interval
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    def __enter__(self) -> HardwareMonitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def metrics(self) -> dict:
        out = {**NULL_HARDWARE, **{k: v for k, v in self._static.items() if k in NULL_HARDWARE}}
        if self.samples:
            powers = [p for _, p in self.samples]
            duration = self.samples[-1][0] - self.samples[0][0]
            energy = trapezoid_wh(self.samples)
            out.update(
                energy_wh=energy,
                power_peak_w=max(powers),
                power_avg_w=(energy * 3600 / duration) if duration > 0 else powers[0],
            )
        if self.peak_mem is not None:
            out["gpu_memory_peak_gb"] = self.peak_mem / 1e9
        return out
