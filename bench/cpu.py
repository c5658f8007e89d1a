"""CPU accounting from /proc, so figures can be given per request or per message.

Requests per second move with whatever else the machine is doing; CPU seconds
per request, counted for the processes that did the work, move far less.
Processes that exit during a phase take their CPU time with them (pool
restarts, a killed worker), so use this over phases where the workers live.
"""

from __future__ import annotations

import os
import resource
import time


class CpuMeter:
    """CPU seconds spent over one phase by the process groups the bench started (gunicorn, Celery:
    `app`), by PostgreSQL for the bench database (`db`) and by this process (`own`, the load
    generator), with the wall time.

    `db` is the backends of the bench database alive at either end of the phase plus what backends
    that exited during it used (the postmaster's children's time): Celery's Django fix-up closes the
    connection around every task, so the workers' backends come and go. That second part also holds
    any other database's backends that exited meanwhile, so on a shared server it reads a little high.
    """

    def __init__(self, *, pgids: list[int], database: str) -> None:
        self.pgids, self.database = set(pgids), database

    def _read(self) -> tuple[float, float, float, float]:
        app = db = 0.0
        for cpu, children, pgid, cmdline in _processes():
            if pgid in self.pgids:
                app += cpu
            elif cmdline.startswith("postgres: ") and f" {self.database} " in cmdline:
                db += cpu
            elif cmdline.split(" ", 1)[0].endswith("/postgres"):  # the postmaster: exited backends' time
                db += children
        return app, db, _own_cpu(), time.perf_counter()

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        self.app, self.db, self.own, self.wall = (
            end - start for end, start in zip(self._read(), self._start, strict=True)
        )


def _processes() -> list[tuple[float, float, int, str]]:
    """(own CPU s, exited children's CPU s, process group, command line) of every process."""
    found = []
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        # After the ")": state ppid pgrp ...; utime, stime, cutime, cstime are the 12th to 15th.
        found.append(
            (
                (int(fields[11]) + int(fields[12])) / tick,
                (int(fields[13]) + int(fields[14])) / tick,
                int(fields[2]),
                cmdline,
            )
        )
    return found


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
