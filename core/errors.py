"""Domain errors with stable, typed codes: the one catalogue every layer raises from.

Raised where they happen; mapped once to RFC 9457 problem details by the API
(api/problems.py) and once to form errors by the front desk. `docs/api.md`
lists the catalogue; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class ErrorCode(StrEnum):
    """Every domain error code, with the HTTP status (or statuses) it may leave the API with.

    A code names the reason; the exception family (below) says which of its statuses applies:
    `unknown_patient` is a 404 for a path (`/patients/<id>/`) and a 400 for a body field.
    """

    def __new__(cls, value: str, *statuses: int) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.statuses = statuses
        return member

    statuses: tuple[int, ...]

    @property
    def http_status(self) -> int:
        return self.statuses[0]

    # 400: the request is malformed or names something that does not exist.
    UNKNOWN_PROCEDURE = "unknown_procedure", 400
    PROCEDURE_NOT_BOOKABLE = "procedure_not_bookable", 400
    UNKNOWN_AREA = "unknown_area", 400
    UNKNOWN_DRUG = "unknown_drug", 400
    UNKNOWN_CONDITION = "unknown_condition", 400
    UNKNOWN_PRACTITIONER = "unknown_practitioner", 400
    PRACTITIONER_DOES_NOT_DO_PROCEDURE = "practitioner_does_not_do_procedure", 400
    NO_PRACTITIONER_FOR_PROCEDURE = "no_practitioner_for_procedure", 400
    UNKNOWN_CLINIC = "unknown_clinic", 400
    CLINIC_REQUIRED = "clinic_required", 400
    CLINIC_MISMATCH = "clinic_mismatch", 400
    UNKNOWN_FIELD = "unknown_field", 400
    UNKNOWN_STATUS = "unknown_status", 400
    UNKNOWN_SOURCE = "unknown_source", 400
    INVALID_PATIENT = "invalid_patient", 400
    BIRTH_DATE_IN_FUTURE = "birth_date_in_future", 400
    BIRTH_DATE_TOO_EARLY = "birth_date_too_early", 400
    PERFORMED_IN_FUTURE = "performed_in_future", 400
    DATE_OUT_OF_RANGE = "date_out_of_range", 400
    ENDS_BEFORE_START = "ends_before_start", 400
    DUPLICATE_CONDITION = "duplicate_condition", 400
    NAIVE_DATETIME = "naive_datetime", 400
    NOT_WHOLE_MINUTE = "not_whole_minute", 400
    NONEXISTENT_LOCAL_TIME = "nonexistent_local_time", 400
    AMBIGUOUS_LOCAL_TIME = "ambiguous_local_time", 400
    START_IN_PAST = "start_in_past", 400
    END_BEFORE_START = "end_before_start", 400
    WINDOW_END_BEFORE_START = "window_end_before_start", 400
    WINDOW_TOO_LONG = "window_too_long", 400
    REASON_REQUIRED = "reason_required", 400
    REASON_TOO_LONG = "reason_too_long", 400
    INVALID_WEBHOOK_ENDPOINT = "invalid_webhook_endpoint", 400
    INVALID_UNSUBSCRIBE_LINK = "invalid_unsubscribe_link", 400
    INVALID_MANAGE_LINK = "invalid_manage_link", 400
    MANAGE_LINK_EXPIRED = "manage_link_expired", 400
    OUTSIDE_CANCELLATION_WINDOW = "outside_cancellation_window", 409
    MERGE_INTO_SELF = "merge_into_self", 400
    # The part of the record a change was made from changed since it was read (the intake since the page or GET a
    # replacement was made from, clinic.services.intake_version; a course ended meanwhile): nothing changes, so
    # what someone recorded meanwhile (a contraindication, a course's end) is not overwritten.
    RECORD_CHANGED = "record_changed", 412
    PATIENT_MERGED = "patient_merged", 400, 409  # 409: a change sent to a merged record's address (api/merged.py)
    UNKNOWN_PLAN_TEMPLATE = "unknown_plan_template", 400
    INVALID_PLAN = "invalid_plan", 400
    PLAN_SESSION_OUTSIDE_WINDOW = "plan_session_outside_window", 400
    UNKNOWN_PLAN_SESSION = "unknown_plan_session", 400

    # 403: the caller lacks the right.
    CLINICIAN_REQUIRED = "clinician_required", 403

    # 404 (a path) or 400 (a body field): the thing does not exist for this caller.
    UNKNOWN_PATIENT = "unknown_patient", 404, 400
    UNKNOWN_APPOINTMENT = "unknown_appointment", 404
    UNKNOWN_MEDICATION_COURSE = "unknown_medication_course", 404
    UNKNOWN_WEBHOOK_ENDPOINT = "unknown_webhook_endpoint", 404
    UNKNOWN_WEBHOOK_DELIVERY = "unknown_webhook_delivery", 404
    UNKNOWN_PLAN = "unknown_plan", 404

    # 409: the appointment's status does not allow the action, or the rules refuse it.
    NOT_RESCHEDULABLE = "not_reschedulable", 409
    NOT_CANCELLABLE = "not_cancellable", 409
    NOT_PENDING_CLEARANCE = "not_pending_clearance", 409
    CLEARANCE_REQUIRED = "clearance_required", 409
    REVIEW_REQUIRED = "review_required", 409
    NOT_COMPLETABLE = "not_completable", 409
    NOT_NO_SHOW = "not_no_show", 409
    NOT_CHECKABLE_IN = "not_checkable_in", 409
    NOT_STARTED = "not_started", 409
    BOOKING_REFUSED = "booking_refused", 409
    WEBHOOK_ENDPOINT_PAUSED = "webhook_endpoint_paused", 409
    WEBHOOK_EVENT_NOT_SUBSCRIBED = "webhook_event_not_subscribed", 409
    # 409: a likely duplicate of a record the organisation has (unless confirmed), or a merge needing a decision.
    POSSIBLE_DUPLICATE = "possible_duplicate", 409
    MERGE_CONFLICT = "merge_conflict", 409
    PLAN_INFEASIBLE = "plan_infeasible", 409
    PLAN_REFUSED = "plan_refused", 409
    PLAN_SESSION_NOT_REPLANNABLE = "plan_session_not_replannable", 409
    PLAN_CANCELLED = "plan_cancelled", 409
    PLAN_FINISHED = "plan_finished", 409


class DomainError(Exception):
    """Base class: `code` is stable and machine-readable, the message is for people.

    `data` carries structured detail an interface may need (an intake error's `line`, 0-based),
    so nobody parses it out of the message.
    """

    http_status = 400

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None, data: dict | None = None) -> None:
        code = ErrorCode(code)
        if self.http_status not in code.statuses:
            raise TypeError(f"{code} is a {code.statuses} error, not a {type(self).__name__}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.data = data or {}


class InvalidInput(DomainError):
    """The request is malformed or names something that does not exist (HTTP 400).

    `errors` maps each offending field to its messages, so a form or an API
    client sees every problem at once; by default it holds the one `field`.
    """

    http_status = 400

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        errors: dict[str, list[str]] | None = None,
        data: dict | None = None,
    ) -> None:
        super().__init__(code, message, field=field, data=data)
        self.errors = errors or {field or "non_field_errors": [message]}

    @classmethod
    def unknown_code(
        cls, code: ErrorCode, *, what: str, given: object, known: Iterable[str], field: str, known_as: str = "Codes"
    ) -> InvalidInput:
        """A code that is not in a catalogue: the message names the codes there are, so a caller can pick one."""
        return cls(
            code, f"There is no {what} with code {given!r}. {known_as}: {', '.join(sorted(known))}.", field=field
        )


class NotFound(DomainError):
    """The thing asked for does not exist for this caller (HTTP 404)."""

    http_status = 404


class NotAllowed(DomainError):
    """The caller lacks the right for this action (HTTP 403)."""

    http_status = 403


class InvalidTransition(DomainError):
    """The appointment's status does not allow this action (HTTP 409)."""

    http_status = 409


class PreconditionFailed(DomainError):
    """What the request was made from is no longer what is stored (HTTP 412): nothing changed."""

    http_status = 412


class Refused(DomainError):
    """The rules or the calendar forbid it (HTTP 409); subclasses carry the verdict."""

    http_status = 409
