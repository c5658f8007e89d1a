"""The Celery app's connection handling around tasks."""

from types import SimpleNamespace

from django.db import connection, transaction

from config.celery import close_old_connections


def test_an_eager_task_leaves_its_callers_transaction_open(db):
    eager = SimpleNamespace(request=SimpleNamespace(is_eager=True))

    with transaction.atomic():
        close_old_connections(sender=eager)
        assert connection.in_atomic_block
        assert connection.connection is not None
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)


def test_a_worker_task_drops_a_connection_that_is_past_its_age(transactional_db):
    worker = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close_at = 0  # as if CONN_MAX_AGE had run out

    close_old_connections(sender=worker)

    assert connection.connection is None


def test_celerys_own_log_handlers_mask_contacts():
    """A worker replaces the root logger's handlers (after_setup_logger): its handlers get the filter that
    Django's console handler has (settings.LOGGING, core.redact)."""
    import logging

    from celery.signals import after_setup_logger

    from core.redact import ContactsMasked

    logger = logging.getLogger("tests.celery.worker")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        after_setup_logger.send(
            sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="", colorize=False
        )
        after_setup_logger.send(
            sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="", colorize=False
        )
        assert [type(f) for f in handler.filters] == [ContactsMasked]
    finally:
        logger.removeHandler(handler)
