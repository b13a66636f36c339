"""Process identity: a pid plus the process's start time, never its command line.

A pid alone is not an identity: after our trainer dies the kernel may give its pid to an
unrelated process. The start time (clock ticks since boot, field 22 of ``/proc/PID/stat``)
recorded when the trainer starts tells the two apart: a recycled pid has another start time.
Without ``/proc`` (macOS) only existence can be checked.
"""
from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (after the command name), or None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` (clock ticks since boot, as text) or None when unavailable."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``R``, ``S``, ``Z`` …) or None when it does not exist."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def process_start_epoch(pid: int) -> float | None:
    """Wall-clock start time of ``pid`` (unix seconds, ~1 s resolution) or None when unknown."""
    ticks = process_start_time(pid)
    try:
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, TypeError, StopIteration, IndexError):
        return None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` lives (zombies count as gone) and, when ``start`` is given, is still the
    process that had that start time (a recycled pid is not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if Path("/proc").is_dir():
        state = process_state(pid)
        if state is None or state in ("Z", "X"):
            return False
        return start is None or process_start_time(pid) == str(start)
    try:                                       # no /proc (macOS): best effort
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
