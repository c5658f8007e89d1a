"""FHIR R4 read endpoints: metadata, Schedule, Slot, Appointment (docs/fhir.md).

The same callers and scope as /api/v1/ (API keys or staff sessions, api.access): every query starts
from the caller's clinics, so what lies outside is not found. Answers are application/fhir+json;
every error is an OperationOutcome with the HTTP status the v1 API would give. Writes stay on v1.
"""

from __future__ import annotations

import math
from datetime import timedelta
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db.models import Prefetch, Q
from django.http import Http404, QueryDict
from django.urls import reverse
from django.utils import timezone
from rest_framework import exceptions, renderers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.utils.mediatypes import media_type_matches
from rest_framework.views import APIView

from api.access import caller_for
from api.problems import PayloadTooLarge
from api.views import refuse_oversized
from clinic.models import AppointmentStatus, Practitioner, ProcedureType
from clinic.selectors import appointments_in, merged_patient_survivors
from core.errors import DomainError
from core.plain_text import without_controls
from core.redact import masked_logger
from fhir import mapping, search
from fhir.search import SearchError
from fhir.slots import slots_search

logger = masked_logger(__name__)

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
DEFAULT_SLOT_DAYS = 7
MAX_SLOT_DAYS = 31

# HTTP status → OperationOutcome issue type (R4 IssueType codes).
_ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    413: "too-long",
    414: "too-long",
    415: "not-supported",
    429: "throttled",
    431: "too-long",
}


class FhirJsonRenderer(renderers.JSONRenderer):
    """FHIR JSON, each string without the control characters FHIR's `string` allows none of (all but tab, CR and
    LF: a name or a reason stored before they were refused, core.plain_text)."""

    media_type = FHIR_JSON
    format = "fhir+json"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return super().render(_fit(data), accepted_media_type, renderer_context)


def _fit(value):
    if isinstance(value, str):
        return without_controls(value)
    if isinstance(value, dict):
        return {key: _fit(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fit(item) for item in value]
    return value


class AlwaysFhirJson(BaseContentNegotiation):
    """FHIR JSON whatever the Accept header says: this server has one format (an unreadable Accept is no error).
    A body is read only by a parser for its Content-Type (a search by POST: a form), else a 415."""

    def select_parser(self, request, parsers):
        return next((p for p in parsers if media_type_matches(p.media_type, request.content_type)), None)

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def issue_type(status: int) -> str:
    """The OperationOutcome issue type for an HTTP status."""
    return _ISSUE_TYPE.get(status, "exception" if status >= 500 else "processing")


def outcome_response(
    status: int, *, problem: str, diagnostics: str, expression: list[str] | None = None, headers: dict | None = None
) -> Response:
    body = mapping.operation_outcome(
        code=issue_type(status),
        diagnostics=diagnostics,
        problem=problem,
        expression=expression,
    )
    return Response(body, status=status, headers=headers, content_type=FHIR_JSON)


def exception_handler(exc, context) -> Response:
    """Everything a FHIR view raises, as an OperationOutcome (never a 500 page, never HTML)."""
    if isinstance(exc, SearchError):
        return outcome_response(400, problem="invalid_search", diagnostics=exc.message, expression=[exc.parameter])
    if isinstance(exc, DomainError):
        return outcome_response(
            exc.http_status,
            problem=str(exc.code),
            diagnostics=exc.message,
            expression=[exc.field] if exc.field else None,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, TooManyFieldsSent):  # a SuspiciousOperation: read as the bad input it is, as v1 does
        exc = exceptions.ParseError("Too many parameters: this server reads at most a thousand.")
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError("The request is malformed.")
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.Throttled):
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait or 1)))
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return outcome_response(exc.status_code, problem=exc.default_code, diagnostics=str(detail), headers=headers)
    request = context.get("request")
    logger.exception("Unexpected error in %s", getattr(request, "path", "a FHIR view"))
    return outcome_response(
        500, problem="server_error", diagnostics="Something went wrong on our side; it has been logged."
    )


class FhirView(APIView):
    schema = None  # not part of the v1 OpenAPI document: the CapabilityStatement describes this interface
    renderer_classes = [FhirJsonRenderer]
    content_negotiation_class = AlwaysFhirJson
    parser_classes = []
    # Read-only: any other method is a 405 that says where writes go, its Allow header naming these (DRF lists
    # the names here that have a handler). A search's POST [type]/_search is its own route (fhir/urls.py).
    http_method_names = ["get", "head"]

    def get_exception_handler(self):
        return exception_handler

    def initial(self, request, *args, **kwargs):
        refuse_oversized(request)
        super().initial(request, *args, **kwargs)

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise exceptions.MethodNotAllowed(
            request.method,
            detail=f"{request.method} is not served here ({', '.join(self.allowed_methods)} is): this FHIR "
            "interface is read-only; book, move and cancel through /api/v1/.",
        )

    def base(self) -> str:
        """This server's FHIR base URL as it hands it out (in fullUrl and links), ending in '/'."""
        return self.request.build_absolute_uri(reverse("fhir:metadata")).removesuffix("metadata")

    @property
    def caller(self):
        return caller_for(self.request)

    def clinics(self):
        return self.caller.clinics()

    def reason_shown(self) -> bool:
        """Whether this caller reads a cancelled appointment's reason (api.access.Caller.reads_reasons)."""
        return self.caller.reads_reasons

    def practitioners(self):
        return (
            Practitioner.objects.filter(clinic__in=self.clinics())
            .select_related("clinic")
            .prefetch_related("procedures")
            .order_by("name", "id")
        )

    def schedules(self):
        """The practitioners as Schedules: each with the procedures one can book with them (a procedure switched
        off, not `bookable`, is a service no one can book: REST availability and booking refuse it)."""
        bookable = ProcedureType.objects.filter(bookable=True)
        return self.practitioners().prefetch_related(None).prefetch_related(Prefetch("procedures", queryset=bookable))


class FhirSearchView(FhirView):
    """A search of one resource type: GET [type]?..., or POST [type]/_search with the parameters as a form body
    (R4 http.html: the same search; it keeps patient ids out of addresses and logs). Each answers a Bundle."""

    resource_type = ""
    parser_classes = [FormParser]

    def get(self, request):
        return self.results(request.query_params)

    def post(self, request):
        """Routed only at [type]/_search: the parameters of the address and of the body, together."""
        params = request.query_params.copy()
        body = request.data if isinstance(request.data, QueryDict) else QueryDict()
        for name, values in body.lists():
            params.setlist(name, params.getlist(name) + values)
        return self.results(params)

    def results(self, params: QueryDict) -> Response:
        raise NotImplementedError

    def paged(self, params: QueryDict, rows, build) -> Response:
        count, page = search.count(params), search.page(params)
        total = rows.count() if hasattr(rows, "count") and not isinstance(rows, list) else len(rows)
        if page > 1 and (page - 1) * count >= total:
            raise SearchError("page", "page is past the last page of this search.")
        chunk = rows[(page - 1) * count : page * count]
        return self.bundle(params, [build(row) for row in chunk], total=total, page=page, count=count)

    def bundle(self, params: QueryDict, resources: list[dict], *, total: int, page: int, count: int) -> Response:
        base = self.base()
        kept = [(k, v) for k in params for v in params.getlist(k) if k != "page"]

        def page_url(number: int) -> str:  # a GET address, also for a search made by POST (R4)
            return f"{base}{self.resource_type}?{urlencode([*kept, ('page', number)])}"

        this = self.request.build_absolute_uri() if self.request.method != "POST" else page_url(page)
        link = [{"relation": "self", "url": this}]
        if page * count < total:
            link.append({"relation": "next", "url": page_url(page + 1)})
        if page > 1:
            link.append({"relation": "previous", "url": page_url(page - 1)})
        body = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": link}
        entries = [
            {"fullUrl": f"{base}{self.resource_type}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ]
        # What the server says of the search itself (R4 Bundle: search.mode "outcome"), e.g. a merged patient's id.
        entries += [{"resource": o, "search": {"mode": "outcome"}} for o in getattr(self, "search_outcomes", [])]
        if entries:  # R4 JSON: an array is never empty; an empty search has no `entry`
            body["entry"] = entries
        return Response(body, content_type=FHIR_JSON)


class MetadataView(FhirView):
    """The CapabilityStatement: public, like the v1 schema (it describes the server, no data)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        search_params = {
            "Schedule": [("_id", "token"), ("actor", "reference"), ("service-type", "token"), ("active", "token")],
            "Slot": [("schedule", "reference"), ("start", "date"), ("status", "token"), ("service-type", "token")],
            "Appointment": [
                ("_id", "token"),
                ("patient", "reference"),
                ("actor", "reference"),
                ("practitioner", "reference"),
                ("location", "reference"),
                ("date", "date"),
                ("status", "token"),
                ("service-type", "token"),
            ],
        }
        resources = []
        for kind, params in search_params.items():
            interactions = [{"code": "search-type"}] + ([{"code": "read"}] if kind != "Slot" else [])
            resources.append(
                {
                    "type": kind,
                    "interaction": interactions,
                    "searchParam": [{"name": name, "type": kind_} for name, kind_ in params]
                    + [{"name": "_count", "type": "number"}],
                }
            )
        return Response(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": "2026-12-01",
                "publisher": "Clinic scheduling",
                "kind": "instance",
                "software": {"name": "clinic-scheduling"},
                "implementation": {
                    "description": "Read-only FHIR R4 view of schedules, slots and appointments; "
                    "writes go through /api/v1/.",
                    "url": self.base(),
                },
                "fhirVersion": FHIR_VERSION,
                "format": [FHIR_JSON],
                "rest": [
                    {
                        "mode": "server",
                        "documentation": "Per-patient eligibility does not fit a Slot: ask POST /api/v1/eligibility/ "
                        "(or GET /api/v1/availability/ for a patient's free, eligible times).",
                        "security": {
                            "description": "Authorization: Token <key> (the v1 API's keys and scope), or a "
                            "staff session."
                        },
                        "resource": resources,
                    }
                ],
            },
            content_type=FHIR_JSON,
        )


def _ids(params, name: str, resource_type: str) -> list[list]:
    """`_id` as given: per repeat its ids (comma-separated alternatives, OR); each repeat must match (AND)."""
    return [[pk for _, pk in repeat if pk] for repeat in search.id_sets(params, name, (resource_type,))]


class ScheduleSearchView(FhirSearchView):
    resource_type = "Schedule"

    def results(self, params):
        search.refuse_unknown(params, {"_id", "actor", "service-type", "active"})
        practitioners = self.schedules()
        for wanted in _ids(params, "_id", "Schedule"):
            practitioners = practitioners.filter(pk__in=wanted)
        for repeat in search.id_sets(params, "actor", ("Practitioner", "Location"), base=self.base()):
            either = Q(pk__in=[])
            for kind, pk in repeat:
                if pk:
                    either |= Q(**{"pk" if kind == "Practitioner" else "clinic_id": pk})
            practitioners = practitioners.filter(either)
        # A practitioner does several procedures: each repeat is its own condition (AND), its codes alternatives.
        for alternatives in search.code_sets(params, "service-type", mapping.PROCEDURE_SYSTEM):
            practitioners = practitioners.filter(procedures__code__in=alternatives, procedures__bookable=True)
        active = search.single(params, "active")
        if active is not None:
            if active not in ("true", "false"):
                raise SearchError("active", "active is true or false.")
            practitioners = practitioners.filter(is_active=active == "true")
        return self.paged(params, practitioners.distinct(), mapping.schedule_resource)


class ScheduleReadView(FhirView):
    def get(self, request, resource_id):
        pk = search.canonical_id(resource_id)
        practitioner = self.schedules().filter(pk=pk).first() if pk else None
        if practitioner is None:
            raise exceptions.NotFound(f"There is no Schedule/{resource_id} here.")
        return Response(mapping.schedule_resource(practitioner), content_type=FHIR_JSON)


class SlotSearchView(FhirSearchView):
    resource_type = "Slot"

    def results(self, params):
        search.refuse_unknown(params, {"schedule", "start", "status", "service-type"})
        practitioners = self.practitioners().filter(is_active=True)
        # No Slot is in two schedules: each repeat must match (AND), its comma-separated schedules alternatives.
        for repeat in search.id_sets(params, "schedule", ("Schedule",), base=self.base()):
            practitioners = practitioners.filter(pk__in=[pk for _, pk in repeat if pk])
        asked = search.codes(params, "status", mapping.SLOT_STATUS_SYSTEM)
        statuses = set(mapping.SLOT_STATUSES) if asked is None else set(asked)
        unknown = statuses - set(mapping.SLOT_STATUSES)
        if unknown:
            raise SearchError("status", f"status is one of {', '.join(mapping.SLOT_STATUSES)}.")
        service_types = search.code_sets(params, "service-type", mapping.PROCEDURE_SYSTEM)
        named = set().union(*service_types)
        if len(named) > 1:
            raise SearchError("service-type", "Give one service-type (a procedure code) per Slot search.")
        procedure = None
        if named:
            [code] = named
            procedure = ProcedureType.objects.filter(code=code).first()
            if procedure is None:
                raise SearchError("service-type", f"There is no procedure with code {code!r}.")
        if any(not codes for codes in service_types):  # only another system's code: a Slot for no procedure here
            practitioners = practitioners.none()
        now = timezone.now()
        window = search.window(params, "start")
        start = window.start or now
        end = window.end or start + timedelta(days=DEFAULT_SLOT_DAYS)
        if end <= start:
            raise SearchError("start", "start: the range is empty (give start=lt... after start=ge...).")
        if end - start > timedelta(days=MAX_SLOT_DAYS):
            raise SearchError("start", f"Ask for at most {MAX_SLOT_DAYS} days of slots at a time.")
        rows = slots_search(
            practitioners=list(practitioners),
            window_start=start,
            window_end=end,
            statuses=statuses,
            procedure=procedure,
            now=now,
        )
        return self.paged(params, rows, mapping.slot_resource)


_APPOINTMENT_REFERENCES = {
    "patient": ("Patient",),
    "practitioner": ("Practitioner",),
    "location": ("Location",),
    "actor": ("Patient", "Practitioner", "Location"),
}
_FIELD_FOR = {"Patient": "patient_id", "Practitioner": "practitioner_id", "Location": "clinic_id"}


class AppointmentSearchView(FhirSearchView):
    resource_type = "Appointment"

    def results(self, params):
        search.refuse_unknown(params, {"_id", "date", "status", "service-type", *_APPOINTMENT_REFERENCES})
        rows = appointments_in(self.clinics())
        for wanted in _ids(params, "_id", "Appointment"):
            rows = rows.filter(pk__in=wanted)
        base = self.base()
        patients_named: dict = {}  # each patient id the search names, with the first parameter naming it
        for name, types in _APPOINTMENT_REFERENCES.items():
            for repeat in search.id_sets(params, name, types, base=base):
                query = None
                for kind, pk in repeat:  # `rows` is already the caller's: anyone else's matches nothing
                    if kind == "Patient" and pk:
                        patients_named.setdefault(pk, name)
                    part = rows.filter(**{_FIELD_FOR[kind]: pk}) if pk else rows.none()
                    query = part if query is None else query | part
                rows = query
        self.search_outcomes = self._merged_named(patients_named)
        statuses = search.codes(params, "status", mapping.APPOINTMENT_STATUS_SYSTEM)
        if statuses is not None:  # [] (repeats with no status in common) matches nothing
            known = set(mapping.FHIR_APPOINTMENT_STATUSES) | set(mapping.OTHER_FHIR_APPOINTMENT_STATUSES)
            if not set(statuses) <= known:
                raise SearchError("status", f"status is an R4 Appointment status: {', '.join(sorted(known))}.")
            ours = [o for code in statuses for o in mapping.FHIR_APPOINTMENT_STATUSES.get(code, ())]
            # Confirmed is `booked` until the patient checks in, then `arrived`.
            wanted = Q(status__in=[o for o in ours if o != AppointmentStatus.CONFIRMED])
            if "booked" in statuses:
                wanted |= Q(status=AppointmentStatus.CONFIRMED, checked_in_at__isnull=True)
            if "arrived" in statuses:
                wanted |= Q(status=AppointmentStatus.CONFIRMED, checked_in_at__isnull=False)
            rows = rows.filter(wanted)
        service_types = search.codes(params, "service-type", mapping.PROCEDURE_SYSTEM)
        if service_types is not None:
            rows = rows.filter(procedure_id__in=service_types)
        window = search.window(params, "date")
        if window.start:
            rows = rows.filter(start_at__gte=window.start)
        if window.end:
            rows = rows.filter(start_at__lt=window.end)
        shown = self.reason_shown()
        return self.paged(
            params,
            rows.order_by("start_at", "id"),
            lambda row: mapping.appointment_resource(row, reason_shown=shown),
        )

    def _merged_named(self, named: dict) -> list[dict]:
        """A patient merged into another has no appointments under its old id (they moved to the survivor): the
        search still finds nothing by it, and says where the patient went (one outcome a record, in one statement
        however many ids are named), as the REST list's 400 patient_merged does, so a client does not take the empty
        answer for "no appointments"."""
        survivors = merged_patient_survivors(self.clinics(), named) if named else {}
        return [
            mapping.operation_outcome(
                code="informational",
                severity="warning",
                problem="patient_merged",
                diagnostics=f"Patient/{pk} was merged into Patient/{survivors[pk].pk}: search by that id.",
                expression=[parameter],
            )
            for pk, parameter in named.items()  # in the order the search names them
            if pk in survivors
        ]


class AppointmentReadView(FhirView):
    def get(self, request, resource_id):
        pk = search.canonical_id(resource_id)
        appointment = appointments_in(self.clinics()).filter(pk=pk).first() if pk else None
        if appointment is None:
            raise exceptions.NotFound(f"There is no Appointment/{resource_id} here.")
        resource = mapping.appointment_resource(appointment, reason_shown=self.reason_shown())
        return Response(resource, content_type=FHIR_JSON)


class UnknownView(FhirView):
    """Anything else under /fhir/: an OperationOutcome 404 (resource types this server lacks, and addresses beside
    the base such as /fhir/metadata or /fhir/R4/, which a client with a slightly wrong base URL asks)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request, *args, **kwargs):
        raise exceptions.NotFound(
            f"This server has nothing at this address; its base is {self.base()} and GET {self.base()}metadata "
            "lists what it serves."
        )

    http_method_not_allowed = get  # whatever the method: nothing is here
