"""`manage.py check --database default` says when nothing keeps the planner's statistics current (core/checks.py):
PostgreSQL without autovacuum, and tables changed well past what autovacuum would let pass since their last
ANALYZE."""

import pytest
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from api.models import IdempotencyKey
from core.checks import STALE_MIN_ROWS, STALE_SHARE, TableStats, findings, is_stale

# --- The rule, without a database ------------------------------------------------------------------------------


def _table(changed: int, counted: float = -1.0, never: bool = True) -> TableStats:
    return TableStats("clinic_appointment", counted, changed, never)


def test_a_table_never_analysed_is_stale_from_the_minimum_on():
    assert not is_stale(_table(STALE_MIN_ROWS - 1))
    assert is_stale(_table(STALE_MIN_ROWS))


def test_a_large_table_is_stale_only_past_its_share():
    counted = 100_000.0
    share = int(STALE_SHARE * counted)
    assert not is_stale(_table(share, counted, never=False))
    assert is_stale(_table(share + 1, counted, never=False))


@given(
    counted=st.floats(min_value=-1, max_value=1e9, allow_nan=False),
    changed=st.integers(min_value=0, max_value=10**9),
    more=st.integers(min_value=0, max_value=10**9),
)
def test_staleness_only_grows_with_the_rows_changed(counted, changed, more):
    if is_stale(_table(changed, counted)):
        assert is_stale(_table(changed + more, counted))


def test_findings_name_autovacuum_and_each_stale_table():
    tables = [_table(5000), TableStats("clinic_patient", 10_000.0, 10, False)]
    found = findings(autovacuum=False, tables=tables)
    assert [w.id for w in found] == ["core.W001", "core.W002"]
    assert found[1].obj == "clinic_appointment"
    assert "5,000 rows changed since it was never analysed" in found[1].msg
    assert "ANALYZE clinic_appointment" in found[1].hint
    assert findings(autovacuum=True, tables=tables[1:]) == []


# --- On PostgreSQL -----------------------------------------------------------------------------------------------


def _database_warnings():
    connection.close()  # a new session reads the statistics afresh (PostgreSQL caches them per transaction)
    return run_checks(tags=[Tags.database], databases=["default"])


def _fill_keys(count: int) -> None:
    now = timezone.now()
    IdempotencyKey.objects.bulk_create(
        IdempotencyKey(
            owner="check", key=f"k{n}", fingerprint="f", method="POST", path="/", response_status=0, created_at=now
        )
        for n in range(count)
    )


def _flush_statistics():
    """PostgreSQL counts a session's changes in shared statistics when the session goes idle, at most once
    a second unless told to."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT 1")


@pytest.fixture
def no_autoanalyze():
    """Where the server runs autovacuum, it must not analyse the table while a test makes it stale."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE api_idempotencykey SET (autovacuum_enabled = off)")
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE api_idempotencykey RESET (autovacuum_enabled)")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_check_reads_the_servers_autovacuum_setting():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('autovacuum') = 'on' AND current_setting('track_counts') = 'on'")
        on = cursor.fetchone()[0]
    assert ("core.W001" in {w.id for w in _database_warnings()}) is not on


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_table_filled_since_its_last_analyze_is_named_until_it_is_analysed(no_autoanalyze):
    _fill_keys(STALE_MIN_ROWS + 200)
    _flush_statistics()
    stale = {w.obj for w in _database_warnings() if w.id == "core.W002"}
    assert "api_idempotencykey" in stale

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE api_idempotencykey")
    stale = {w.obj for w in _database_warnings() if w.id == "core.W002"}
    assert "api_idempotencykey" not in stale


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_manage_py_check_reports_it(capsys, no_autoanalyze):
    _fill_keys(STALE_MIN_ROWS)
    _flush_statistics()
    connection.close()
    call_command("check", "--database", "default")
    lines = capsys.readouterr().err.splitlines()
    assert any("core.W002" in line and "api_idempotencykey" in line for line in lines)


def test_nothing_is_asked_without_the_database_option():
    assert [w for w in run_checks(tags=[Tags.database]) if w.id.startswith("core.")] == []


@pytest.mark.django_db
def test_only_postgresql_has_statistics_to_check():
    ours = {w.id for w in run_checks(tags=[Tags.database], databases=["default"]) if w.id.startswith("core.")}
    assert ours <= ({"core.W001", "core.W002"} if connection.vendor == "postgresql" else set())
