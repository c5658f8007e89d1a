"""Helpers shared by the API tests: booking over the test client, and requests released together over real HTTP."""

import json
import threading
import urllib.error
import urllib.request

TUESDAY_10 = "2026-03-03T10:00:00+00:00"


def book(api, patient, procedure="microneedling", start=TUESDAY_10, **extra):
    return api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra},
        format="json",
    )


def _post(url: str, key: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _all_at_once(calls) -> list[tuple[int, dict]]:
    """Run the calls in threads released together; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        barrier.wait(timeout=30)
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(result is not None for result in results), "a request did not finish"
    return results
