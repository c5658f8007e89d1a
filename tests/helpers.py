"""Helpers shared by test modules at the top of tests/ and the probes that reuse them: migrating the test database to
given migration targets and reading the migration graph's leaves (tests/test_migrations.py); and, shared by tests
in more than one directory, the portal's patient on e-mail and texts (and the fixtures `practitioner` and `patient`
that a module or conftest imports to have them with its own `clinic`) and a raw TCP server that answers whatever it
is told to.
"""

import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.factories import PatientFactory, PractitionerFactory


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _leaves():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


# --- The portal's patient (tests/portal/conftest.py and the portal probes) ---------------------------------------


def olivia_on_email_and_sms(clinic, **fields):
    """Olivia Bennett at `clinic`, on e-mail and texts with consent to texts: the patient the portal's pages and
    messages are read for (`fields` override any of it)."""
    return PatientFactory(
        **{
            "clinic": clinic,
            "first_name": "Olivia",
            "last_name": "Bennett",
            "email": "olivia@example.com",
            "phone": "+447700900123",
            "reminder_channels": ["email", "sms"],
            "sms_consent": True,
            **fields,
        }
    )


@pytest.fixture(name="practitioner")
def portal_practitioner(clinic):
    """Fixture `practitioner`: Dr Amelia Hart at the module's `clinic` (import it with `portal_patient`)."""
    return PractitionerFactory(clinic=clinic, name="Dr Amelia Hart")


@pytest.fixture(name="patient")
def portal_patient(clinic):
    """Fixture `patient`: Olivia Bennett on e-mail and texts (`olivia_on_email_and_sms`) at the module's `clinic`."""
    return olivia_on_email_and_sms(clinic)


# --- A server that answers in whatever bytes it is given (tests/reminders/test_webhook_faults.py) ----------------


@contextmanager
def raw_server(answer: Callable[[socket.socket], None]):
    """Accepts connections on 127.0.0.1, reads the request's head and lets `answer` write whatever it likes; yields
    the server's base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                received = b""
                while b"\r\n\r\n" not in received:
                    received += conn.recv(4096) or b"\r\n\r\n"
                try:
                    answer(conn)
                except OSError:  # the sender gave up and closed
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
