"""Collects figures, prints them as `name: value unit`, and writes JSON and a Markdown table."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path


class Report:
    def __init__(self, *, quick: bool) -> None:
        self.quick = quick
        self.figures: list[dict] = []

    def add(self, name: str, value: float, unit: str, *, target: str = "", note: str = "") -> None:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{name}: {shown} {unit}".rstrip(), flush=True)
        self.figures.append({"name": name, "value": value, "unit": unit, "target": target, "note": note})

    def write(self, json_path: Path, markdown_path: Path) -> None:
        meta = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": self.quick,
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
        json_path.write_text(json.dumps({"meta": meta, "figures": self.figures}, indent=1) + "\n")
        begin, end = "<!-- figures:begin -->", "<!-- figures:end -->"
        rows = ["| figure | value | unit | target | note |", "|---|---|---|---|---|"]
        for f in self.figures:
            value = f"{f['value']:.4g}" if isinstance(f["value"], float) else f["value"]
            note = f["note"].replace("|", "/")
            rows.append(f"| {f['name']} | {value} | {f['unit']} | {f['target']} | {note} |")
        table = "\n".join(
            [
                begin,
                f"Run {meta['when']} ({'quick' if self.quick else 'full'}), Python {meta['python']}.",
                "",
                *rows,
                end,
            ]
        )
        text = markdown_path.read_text() if markdown_path.exists() else "# Benchmarks\n\n" + begin + "\n" + end + "\n"
        if begin in text and end in text:
            text = text[: text.index(begin)] + table + text[text.index(end) + len(end) :]
        else:
            text += "\n" + table + "\n"
        markdown_path.write_text(text)
