"""The live server the browser tests share answers every request before a test's database is flushed.

A browser test that ended with an htmx live check still out let the server read inside its transaction while the
teardown truncated the tables: PostgreSQL reported a deadlock, the flush failed, and the next test found the last
one's rows (CI, 7 December 2026: `Practitioner.MultipleObjectsReturned`). tests/conftest.py now waits for the
server's answers (tests/browser.RequestsInFlight) before the flush.
"""

import threading
import urllib.request

import pytest

from tests.browser import RequestsInFlight


def test_the_counter_is_busy_while_a_request_is_answered_and_idle_after():
    release, entered = threading.Event(), threading.Event()

    def slow_app(environ, start_response):
        entered.set()
        release.wait(timeout=10)
        start_response("204 No Content", [])
        return [b""]

    counter = RequestsInFlight(slow_app)
    assert counter.wait_idle(timeout=0)
    answering = threading.Thread(target=counter, args=({}, lambda *args: None))
    answering.start()
    try:
        # Inside the application: counted by then (a thread just started may not have reached the counter yet).
        assert entered.wait(timeout=10)
        assert not counter.wait_idle(timeout=0.2)
        assert counter.busy == 1
    finally:
        release.set()
        answering.join(timeout=10)
    assert counter.wait_idle(timeout=5)
    assert counter.busy == 0


def test_a_failing_request_is_not_counted_as_busy_for_ever():
    def broken_app(environ, start_response):
        raise RuntimeError("the view fell over")

    counter = RequestsInFlight(broken_app)
    with pytest.raises(RuntimeError):
        counter({}, lambda *args: None)
    assert counter.busy == 0 and counter.wait_idle(timeout=0)


@pytest.mark.django_db(transaction=True)
def test_the_live_server_is_counted_and_a_request_out_holds_the_teardown(live_server):
    """The fixture put the counter around the live server itself; a request the server is still answering keeps it
    busy, so the teardown's wait would hold the flush back until the answer is written."""
    counter = live_server.thread.httpd.get_app()
    assert isinstance(counter, RequestsInFlight)

    release = threading.Event()
    entered = threading.Event()
    django_app = counter.app

    def held(environ, start_response):
        entered.set()
        release.wait(timeout=10)
        return django_app(environ, start_response)

    counter.app = held
    answers = []
    client = threading.Thread(
        target=lambda: answers.append(urllib.request.urlopen(f"{live_server.url}/login/", timeout=10).status)
    )
    client.start()
    try:
        assert entered.wait(timeout=10)
        assert not counter.wait_idle(timeout=0.2)
    finally:
        release.set()
        client.join(timeout=10)
        counter.app = django_app
    assert counter.wait_idle(timeout=5)
    assert answers and answers[0] < 500
