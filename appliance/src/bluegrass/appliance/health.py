"""Health of the Pi and its drive, with psutil: what `status` shows and what raises alerts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

# Sensor names of the CPU, most specific first: the Pi's SoC, then common x86 ones.
_CPU_SENSORS = ("cpu_thermal", "soc_thermal", "coretemp", "k10temp", "zenpower", "acpitz")


def cpu_temperature() -> float | None:
    read = getattr(psutil, "sensors_temperatures", None)
    if read is None:
        return None
    try:
        sensors = read()
    except (OSError, RuntimeError):
        return None
    for name in (*_CPU_SENSORS, *sorted(sensors)):
        entries = sensors.get(name)
        if entries:
            return float(entries[0].current)
    return None


def disk(path: Path) -> dict[str, object] | None:
    try:
        usage = psutil.disk_usage(str(path))
    except OSError:
        return None
    return {
        "path": str(path),
        "total": usage.total,
        "used": usage.used,
        "free": usage.free,
        "free_percent": round(100 - usage.percent, 1),
    }


def snapshot(drive_root: Path | None) -> dict[str, object]:
    memory = psutil.virtual_memory()
    load = os.getloadavg()
    return {
        "at": time.time(),
        "memory": {
            "total": memory.total,
            "available": memory.available,
            "available_percent": round(memory.available * 100 / memory.total, 1),
        },
        "load": [round(x, 2) for x in load],
        "cpus": psutil.cpu_count() or 1,
        "cpu_temperature": cpu_temperature(),
        "drive": disk(drive_root) if drive_root else None,
    }


def problems(
    health: dict[str, object], low_space_percent: float, max_temperature: float
) -> list[tuple[str, str]]:
    """(alert kind, message) for what is wrong now."""
    found = []
    drive = health.get("drive")
    if isinstance(drive, dict) and drive["free_percent"] < low_space_percent:
        found.append(
            (
                "drive-low",
                f"the drive has {drive['free_percent']}% free ({drive['free'] // 2**20} MB); "
                "replace it with a bigger one soon",
            )
        )
    temperature = health.get("cpu_temperature")
    if isinstance(temperature, float) and temperature > max_temperature:
        found.append(("hot", f"the CPU is at {temperature:.0f} °C; give the Pi some air"))
    return found
