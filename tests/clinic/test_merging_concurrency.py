"""Two merges of the same pair at once, in opposite directions: one wins, the other is refused, no deadlock."""

import threading

import pytest
from django.db import connection

from clinic.merging import patient_merge
from clinic.models import Patient, PatientMerge
from core.errors import ErrorCode, InvalidInput
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, PatientFactory


def race(*calls):
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


def merging(merged, into):
    return lambda: patient_merge(merged=merged, into=into, now=CLOCK, actor_label="race", clinical=True)


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(3))
def test_opposite_merges_of_one_pair_one_wins(transactional_db, catalogue, attempt):
    clinic = ClinicFactory(code="race")
    a, b = PatientFactory(clinic=clinic), PatientFactory(clinic=clinic)

    outcomes = race(merging(a, b), merging(b, a))

    winners = [o for o in outcomes if isinstance(o, PatientMerge)]
    losers = [o for o in outcomes if isinstance(o, Exception)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert isinstance(losers[0], InvalidInput) and losers[0].code == ErrorCode.PATIENT_MERGED
    assert Patient.objects.filter(merged_into__isnull=True).count() == 1
