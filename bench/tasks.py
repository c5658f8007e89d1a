"""A no-op Celery task: the floor against which the reminder pipeline's throughput is compared.

Workers import it with `-I bench.tasks`. It only increments a counter in Redis
(BENCH_COUNTER_URL), so the bench can tell when every copy has run.
"""

from __future__ import annotations

import os

import redis
from celery import shared_task

_client: redis.Redis | None = None


def _counter() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])
    return _client


@shared_task(name="bench.noop", ignore_result=True)
def noop(counter_key: str) -> None:
    _counter().incr(counter_key)
