"""Independent checks over the database after the booking load, in plain SQL (PostgreSQL).

Written here from docs/rules.md, not by calling the application: if the booking
services or the engine let a bad booking through under concurrency, these
queries see it. Only clinics the load used are looked at.

* Interval violations: every pair of one patient's events (active appointments
  and history records, at least one of the two booked), each `block` rule
  whose earlier/later procedures match the pair, the later starting before the
  gap is over: calendar units compare local dates in the clinic's zone
  (`date(later) < date(earlier) + gap`, months clamped as PostgreSQL and
  relativedelta both do), hours compare elapsed time. Area-scoped rules apply
  when the areas match or either is unknown. Medication rules: an active
  appointment on a local day from the course's first day to before
  `ended_on + gap` (or from its first day on, for an ongoing course).
* Practitioner overlaps: two active appointments of one practitioner whose
  [start, end) ranges intersect.
"""

from __future__ import annotations

ACTIVE = ("pending_clearance", "confirmed")

_GAP = """
    CASE {rule}.gap_unit WHEN 'days' THEN make_interval(days => {rule}.gap_value)
                         WHEN 'weeks' THEN make_interval(weeks => {rule}.gap_value)
                         WHEN 'months' THEN make_interval(months => {rule}.gap_value) END
"""

PROCEDURE_PAIRS = f"""
WITH events AS (
    SELECT a.patient_id, a.id::text AS id, a.procedure_id AS procedure, a.start_at, a.area_id AS area,
           true AS booked
      FROM clinic_appointment a
     WHERE a.status IN ('pending_clearance', 'confirmed') AND a.clinic_id = ANY(%(clinics)s::uuid[])
    UNION ALL
    SELECT r.patient_id, r.id::text, r.procedure_id, r.performed_at, r.area_id, false
      FROM clinic_procedurerecord r JOIN clinic_patient p ON p.id = r.patient_id
     WHERE p.clinic_id = ANY(%(clinics)s::uuid[])
)
SELECT count(*)
  FROM events e
  JOIN events l ON l.patient_id = e.patient_id AND l.id <> e.id AND e.start_at <= l.start_at
  JOIN scheduler_intervalrule ru ON ru.is_active AND ru.severity = 'block'
       AND ru.earlier_procedure_id = e.procedure AND ru.later_procedure_id = l.procedure
  JOIN clinic_patient p ON p.id = e.patient_id
  JOIN clinic_clinic c ON c.id = p.clinic_id
 WHERE (e.booked OR l.booked)
   AND (ru.scope = 'any_area' OR e.area IS NULL OR l.area IS NULL OR e.area = l.area)
   AND CASE WHEN ru.gap_unit = 'hours'
            THEN l.start_at < e.start_at + make_interval(hours => ru.gap_value)
            ELSE (l.start_at AT TIME ZONE c.timezone)::date
                 < ((e.start_at AT TIME ZONE c.timezone)::date + {_GAP.format(rule="ru")})::date
       END
"""

MEDICATION_COURSES = f"""
SELECT count(*)
  FROM clinic_appointment a
  JOIN clinic_clinic c ON c.id = a.clinic_id
  JOIN clinic_medicationcourse m ON m.patient_id = a.patient_id
  JOIN scheduler_intervalrule ru ON ru.is_active AND ru.severity = 'block'
       AND ru.earlier_medication_id = m.drug_id AND ru.later_procedure_id = a.procedure_id
 WHERE a.status IN ('pending_clearance', 'confirmed') AND a.clinic_id = ANY(%(clinics)s::uuid[])
   AND (a.start_at AT TIME ZONE c.timezone)::date >= m.started_on
   AND (m.ended_on IS NULL OR CASE WHEN ru.gap_unit = 'hours'
            THEN a.start_at < (m.ended_on::timestamp AT TIME ZONE c.timezone) + make_interval(hours => ru.gap_value)
            ELSE (a.start_at AT TIME ZONE c.timezone)::date < (m.ended_on + {_GAP.format(rule="ru")})::date
       END)
"""

PRACTITIONER_OVERLAPS = """
SELECT count(*)
  FROM clinic_appointment a
  JOIN clinic_appointment b ON b.practitioner_id = a.practitioner_id AND a.id < b.id
       AND a.start_at < b.end_at AND b.start_at < a.end_at
 WHERE a.status IN ('pending_clearance', 'confirmed') AND b.status IN ('pending_clearance', 'confirmed')
   AND a.clinic_id = ANY(%(clinics)s::uuid[])
"""

ACTIVE_APPOINTMENTS = """
SELECT count(*) FROM clinic_appointment
 WHERE status IN ('pending_clearance', 'confirmed') AND clinic_id = ANY(%(clinics)s::uuid[])
"""


def _count(cursor, sql: str, clinics: list) -> int:
    cursor.execute(sql, {"clinics": clinics})
    return int(cursor.fetchone()[0])


def booking_invariants(connection, clinic_ids: list) -> dict[str, int]:
    """Counts of what must never happen (zero each), and of active appointments for context."""
    clinics = [str(pk) for pk in clinic_ids]
    with connection.cursor() as cursor:
        return {
            "interval_violations": _count(cursor, PROCEDURE_PAIRS, clinics)
            + _count(cursor, MEDICATION_COURSES, clinics),
            "practitioner_overlaps": _count(cursor, PRACTITIONER_OVERLAPS, clinics),
            "active_appointments": _count(cursor, ACTIVE_APPOINTMENTS, clinics),
        }
