"""Optional sampling profiles of the service under load (`python bench/run.py --profile`).

py-spy samples the gunicorn or Celery processes (with their children) from
outside while a phase runs, without changing them, counting only samples
that hold the GIL: Python's own CPU time, not waits for PostgreSQL or Redis
(that side shows in the *_db_cpu_* figures). The raw stacks are kept in the
run's work directory; the summary lists the project's functions by inclusive
time and any function by self time. py-spy needs CPU too, so the figures of
a profiled run are not comparable and are not written to the results.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from bench.procs import VENV_BIN

OWN_CODE = ("api/", "clinic/", "scheduler/", "bench/")


def python_child(pid: int) -> int:
    """The process `timeout` runs (bench.procs.Proc starts everything under `timeout`)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


class Profile:
    """py-spy recording the process tree of `pid` for `seconds`, into `out` (collapsed stacks)."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out = out
        pid = python_child(pid)
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--gil",
                "--duration",
                str(max(1, int(seconds))),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def summary(self, *, top: int = 14) -> str:
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "py-spy did not finish"
        if not self.out.exists():
            return "py-spy wrote nothing (is ptrace allowed here?)"
        inclusive: Counter = Counter()
        own: Counter = Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            frames = [_function(frame) for frame in stack.split(";") if not frame.startswith("process ")]
            total += samples
            for frame in set(frames):
                if frame.split(" (", 1)[-1].startswith(OWN_CODE):
                    inclusive[frame] += samples
            if frames:
                own[frames[-1]] += samples
        if not total:
            return "no busy samples"
        lines = [f"    {total} busy samples; project functions, inclusive:"]
        lines += [f"    {n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(top)]
        lines += ["    self time, any function:"]
        lines += [f"    {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
        return "\n".join(lines)


def _function(frame: str) -> str:
    """`func (path/file.py:12)` -> `func (path/file.py)`: one entry per function, whatever line it was on."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').rsplit(':', 1)[0]})"
