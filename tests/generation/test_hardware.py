"""Hardware metrics: the sampler thread and the trapezoid with a fake reading; nulls on CPU."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.generation.hardware import NULL_HARDWARE, HardwareMonitor, trapezoid_wh


def test_trapezoid_wh():
    # 100 W for an hour, then a ramp to 200 W over an hour: 100 Wh + 150 Wh
    assert trapezoid_wh([(0, 100), (3600, 100), (7200, 200)]) == pytest.approx(250)
    assert trapezoid_wh([(0, 50)]) == 0


def test_sampler_thread_with_fake_readings():
    clock = {"t": 0.0}
    powers = iter([100.0, 200.0, 300.0, 300.0, 300.0, 300.0] + [300.0] * 1000)
    taken = threading.Event()
    count = {"n": 0}

    def read():
        clock["t"] += 1.0  # one simulated second per reading
        count["n"] += 1
        if count["n"] >= 4:
            taken.set()
        return next(powers), 1e9 * count["n"]

    hw = HardwareMonitor(
        read=read,
        static={"gpu_name": "FakeGPU", "gpu_count": 2, "gpu_memory_total_gb": 160.0},
        interval=0.01,
        clock=lambda: clock["t"],
    )
    with hw:
        assert taken.wait(10)
    m = hw.metrics()
    n = len(hw.samples)
    assert n >= 5  # first, >= 3 from the thread, the closing one
    expected = trapezoid_wh(hw.samples)
    assert m["energy_wh"] == pytest.approx(expected)
    assert m["power_peak_w"] == 300.0 and m["gpu_name"] == "FakeGPU" and m["gpu_count"] == 2
    assert m["power_avg_w"] == pytest.approx(expected * 3600 / (hw.samples[-1][0] - hw.samples[0][0]))
    assert m["gpu_memory_peak_gb"] == pytest.approx(count["n"])  # the largest reading
    assert hw._thread is None  # stopped


def test_failed_readings_are_skipped_not_raised():
    calls = {"n": 0}

    def read():
        calls["n"] += 1
        if calls["n"] % 2:
            raise RuntimeError("NVML hiccup")
        return 10.0, 0.0

    hw = HardwareMonitor(read=read, interval=0.01).start()
    time.sleep(0.1)
    hw.stop()
    assert all(p == 10.0 for _, p in hw.samples)


def test_no_gpu_gives_nulls_never_a_crash(monkeypatch):
    hw = HardwareMonitor()  # this machine has no GPU (or no NVML): every value None
    with hw:
        pass
    if hw._static:  # pragma: no cover - a GPU machine
        pytest.skip("a GPU is visible here")
    assert hw.metrics() == NULL_HARDWARE
