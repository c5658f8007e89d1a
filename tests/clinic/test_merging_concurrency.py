"""Two merges of the same pair at once, in opposite directions: one wins, the other is refused, no deadlock."""

import pytest

from clinic.merging import patient_merge
from clinic.models import Patient, PatientMerge
from core.errors import ErrorCode, InvalidInput
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, PatientFactory
from tests.races import race


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
