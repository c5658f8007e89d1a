"""Running calls at the same instant in threads, each with its own database connection (PostgreSQL races)."""

import threading
import time
from contextlib import contextmanager

from django.db import connection, transaction


def race(*calls):
    """Run the calls at once in threads; return each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            outcomes[index] = call()
        except Exception as error:  # noqa: BLE001 - the test inspects what each thread got
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@contextmanager
def held_in_another_connection(take, *, release_after: float | None = None):
    """Run `take()` in a transaction on another thread's connection and keep it open inside the block (or for
    `release_after` seconds, if given, whichever ends first)."""
    holding, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                take()
                holding.set()
                release.wait(release_after if release_after is not None else 10)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        release.set()
        thread.join(20)


def in_a_thread(call, outcome: list, *, name: str | None = None) -> threading.Thread:
    """Start `call` in a thread of its own (its own connection, closed after); its result or exception is
    appended to `outcome`."""

    def run():
        try:
            outcome.append(call())
        except Exception as error:  # noqa: BLE001 - the test inspects what the thread got
            outcome.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def lock_waits() -> int:
    """How many connections to this database wait for a lock now (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def until_a_connection_waits_for_a_lock(timeout: float = 10) -> None:
    """Return once another connection to this database waits for a lock (PostgreSQL); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_waits():
            return
        time.sleep(0.02)
    raise AssertionError(f"no connection waited for a lock within {timeout} s")
