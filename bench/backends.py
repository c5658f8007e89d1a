"""Counting "providers" for the reminder benchmarks: every delivery appends one line to a file.

Each line is `<channel> <outbox id>`, written with one O_APPEND write, so lines
from many worker processes never interleave, and they survive a worker killed
with SIGKILL or a Redis restart. Counting the ids shows losses and duplicates.
Chosen with EMAIL_BACKEND=bench.backends.CountingEmailBackend and
SMS_BACKEND=bench.backends.CountingSmsBackend, BENCH_DELIVERY_LOG=<file>.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from django.core.mail.backends.base import BaseEmailBackend

from reminders.channels import BaseSmsBackend


def _record(channel: str, outbox_id: str) -> None:
    fd = os.open(os.environ["BENCH_DELIVERY_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{channel} {outbox_id}\n".encode())
    finally:
        os.close(fd)


def _recorded(channel: str, outbox_id: str) -> str | None:
    """The provider's answer to "did you accept it?" (reminders.channels.accepted): asked only for rows whose
    sender stopped without recording the outcome."""
    needle = f"{channel} {outbox_id}\n".encode()
    try:
        with open(os.environ["BENCH_DELIVERY_LOG"], "rb") as handle:
            found = any(line == needle for line in handle)
    except FileNotFoundError:
        return None
    return f"bench-{outbox_id}" if found else None


class CountingEmailBackend(BaseEmailBackend):
    """Builds each message's bytes, as a real provider client would, then records its X-Outbox-Id."""

    def send_messages(self, email_messages) -> int:
        for message in email_messages:
            message.message().as_bytes()
            _record("email", message.extra_headers["X-Outbox-Id"])
        return len(email_messages)

    def accepted(self, *, outbox_id: str) -> str | None:
        return _recorded("email", outbox_id)


class CountingSmsBackend(BaseSmsBackend):
    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        _record("sms", outbox_id)
        return f"bench-{outbox_id}"

    def accepted(self, *, outbox_id: str) -> str | None:
        return _recorded("sms", outbox_id)


def deliveries(path: Path) -> Counter:
    """How many times each outbox id was delivered."""
    if not path.exists():
        return Counter()
    return Counter(line.split(" ", 1)[1] for line in path.read_text().splitlines() if " " in line)


def delivery_count(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 16), b""))
    except FileNotFoundError:
        return 0
