"""FHIR R4 read endpoints: metadata, Schedule, Slot, Appointment (docs/fhir.md).

The same callers and scope as /api/v1/ (API keys or staff sessions, api.access): every query starts
from the caller's clinics, so what lies outside is not found. Answers are application/fhir+json;
every error is an OperationOutcome with the HTTP status the v1 API would give. Writes stay on v1.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Q
from django.http import Http404
from django.utils import timezone
from rest_framework import exceptions, renderers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from api.access import caller_for
from api.problems import HeaderTooLarge, UriTooLong
from api.views import MAX_HEADER_LENGTH, MAX_URI_LENGTH
from clinic.models import AppointmentStatus, Practitioner, ProcedureType
from clinic.selectors import appointments_in
from core.errors import DomainError
from fhir import mapping, search
from fhir.search import SearchError
from fhir.slots import slots_search

logger = logging.getLogger(__name__)

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
    media_type = FHIR_JSON
    format = "fhir+json"
    charset = "utf-8"


class AlwaysFhirJson(BaseContentNegotiation):
    """FHIR JSON whatever the Accept header says: this server has one format (an unreadable Accept is no error)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def outcome_response(
    status: int, *, problem: str, diagnostics: str, expression: list[str] | None = None, headers: dict | None = None
) -> Response:
    body = mapping.operation_outcome(
        code=_ISSUE_TYPE.get(status, "exception" if status >= 500 else "processing"),
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
    http_method_names = ["get", "head", "post", "put", "patch", "delete"]  # writes: a 405 that says where to go

    def get_exception_handler(self):
        return exception_handler

    def initial(self, request, *args, **kwargs):
        meta = request.META
        if len(request.path) + len(meta.get("QUERY_STRING", "")) + 1 > MAX_URI_LENGTH:
            raise UriTooLong()
        if any(len(v) > MAX_HEADER_LENGTH for k, v in meta.items() if k.startswith("HTTP_") and isinstance(v, str)):
            raise HeaderTooLarge()
        super().initial(request, *args, **kwargs)

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise exceptions.MethodNotAllowed(
            request.method, detail="This FHIR interface is read-only: book, move and cancel through /api/v1/."
        )

    post = put = patch = delete = http_method_not_allowed

    @property
    def caller(self):
        return caller_for(self.request)

    def clinics(self):
        return self.caller.clinics()

    def practitioners(self):
        return (
            Practitioner.objects.filter(clinic__in=self.clinics())
            .select_related("clinic")
            .prefetch_related("procedures")
            .order_by("name", "id")
        )

    def bundle(self, resource_type: str, resources: list[dict], *, total: int, page: int, count: int) -> Response:
        base = self.request.build_absolute_uri(self.request.path).rsplit("/", 1)[0] + "/"
        params = [
            (k, v) for k in self.request.query_params for v in self.request.query_params.getlist(k) if k != "page"
        ]
        link = [{"relation": "self", "url": self.request.build_absolute_uri()}]
        if page * count < total:
            link.append(
                {
                    "relation": "next",
                    "url": self.request.build_absolute_uri(
                        f"{self.request.path}?{urlencode([*params, ('page', page + 1)])}"
                    ),
                }
            )
        if page > 1:
            link.append(
                {
                    "relation": "previous",
                    "url": self.request.build_absolute_uri(
                        f"{self.request.path}?{urlencode([*params, ('page', page - 1)])}"
                    ),
                }
            )
        return Response(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": total,
                "link": link,
                "entry": [
                    {"fullUrl": f"{base}{resource_type}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                    for r in resources
                ],
            },
            content_type=FHIR_JSON,
        )

    def paged(self, resource_type: str, rows, build) -> Response:
        count, page = search.count(self.request.query_params), search.page(self.request.query_params)
        total = rows.count() if hasattr(rows, "count") and not isinstance(rows, list) else len(rows)
        if page > 1 and (page - 1) * count >= total:
            raise SearchError("page", "page is past the last page of this search.")
        chunk = rows[(page - 1) * count : page * count]
        return self.bundle(resource_type, [build(row) for row in chunk], total=total, page=page, count=count)


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
                    "url": request.build_absolute_uri(request.path).removesuffix("metadata"),
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


class ScheduleSearchView(FhirView):
    def get(self, request):
        params = request.query_params
        search.refuse_unknown(params, {"_id", "actor", "service-type", "active"})
        practitioners = self.practitioners()
        ids = params.getlist("_id")
        if ids:
            practitioners = practitioners.filter(
                pk__in=[search.reference_id(v, "_id", ("Schedule",))[1] for v in ",".join(ids).split(",")]
            )
        for value in params.getlist("actor"):
            kind, pk = search.reference_id(value, "actor", ("Practitioner", "Location"))
            practitioners = practitioners.filter(**{"pk" if kind == "Practitioner" else "clinic_id": pk})
        # A practitioner does several procedures: each repeat is its own condition (AND), its codes alternatives.
        for alternatives in search.code_sets(params, "service-type"):
            practitioners = practitioners.filter(procedures__code__in=alternatives)
        active = search.single(params, "active")
        if active is not None:
            if active not in ("true", "false"):
                raise SearchError("active", "active is true or false.")
            practitioners = practitioners.filter(is_active=active == "true")
        return self.paged("Schedule", practitioners.distinct(), mapping.schedule_resource)


class ScheduleReadView(FhirView):
    def get(self, request, resource_id):
        _, pk = search.reference_id(resource_id, "id", ("Schedule",))
        practitioner = self.practitioners().filter(pk=pk).first() if pk else None
        if practitioner is None:
            raise exceptions.NotFound(f"There is no Schedule/{resource_id} here.")
        return Response(mapping.schedule_resource(practitioner), content_type=FHIR_JSON)


class SlotSearchView(FhirView):
    def get(self, request):
        params = request.query_params
        search.refuse_unknown(params, {"schedule", "start", "status", "service-type"})
        practitioners = self.practitioners().filter(is_active=True)
        schedules = params.getlist("schedule")
        if schedules:
            wanted = [search.reference_id(v, "schedule", ("Schedule",))[1] for v in ",".join(schedules).split(",")]
            practitioners = practitioners.filter(pk__in=[pk for pk in wanted if pk])
        asked = search.codes(params, "status")
        statuses = set(mapping.SLOT_STATUSES) if asked is None else set(asked)
        unknown = statuses - set(mapping.SLOT_STATUSES)
        if unknown:
            raise SearchError("status", f"status is one of {', '.join(mapping.SLOT_STATUSES)}.")
        service_types = search.codes(params, "service-type")
        if service_types is not None and len(service_types) != 1:
            raise SearchError("service-type", "Give one service-type (a procedure code) per Slot search.")
        procedure = None
        if service_types:
            procedure = ProcedureType.objects.filter(code=service_types[0]).first()
            if procedure is None:
                raise SearchError("service-type", f"There is no procedure with code {service_types[0]!r}.")
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
        return self.paged("Slot", rows, mapping.slot_resource)


_APPOINTMENT_REFERENCES = {
    "patient": ("Patient",),
    "practitioner": ("Practitioner",),
    "location": ("Location",),
    "actor": ("Patient", "Practitioner", "Location"),
}
_FIELD_FOR = {"Patient": "patient_id", "Practitioner": "practitioner_id", "Location": "clinic_id"}


class AppointmentSearchView(FhirView):
    def get(self, request):
        params = request.query_params
        search.refuse_unknown(params, {"_id", "date", "status", "service-type", *_APPOINTMENT_REFERENCES})
        rows = appointments_in(self.clinics())
        ids = params.getlist("_id")
        if ids:
            rows = rows.filter(
                pk__in=[search.reference_id(v, "_id", ("Appointment",))[1] for v in ",".join(ids).split(",")]
            )
        for name, types in _APPOINTMENT_REFERENCES.items():
            for value in params.getlist(name):
                alternatives = [search.reference_id(v, name, types) for v in value.split(",")]
                query = None
                for kind, pk in alternatives:  # `rows` is already the caller's: anyone else's matches nothing
                    part = rows.filter(**{_FIELD_FOR[kind]: pk}) if pk else rows.none()
                    query = part if query is None else query | part
                rows = query
        statuses = search.codes(params, "status")
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
        service_types = search.codes(params, "service-type")
        if service_types is not None:
            rows = rows.filter(procedure_id__in=service_types)
        window = search.window(params, "date")
        if window.start:
            rows = rows.filter(start_at__gte=window.start)
        if window.end:
            rows = rows.filter(start_at__lt=window.end)
        return self.paged("Appointment", rows.order_by("start_at", "id"), mapping.appointment_resource)


class AppointmentReadView(FhirView):
    def get(self, request, resource_id):
        _, pk = search.reference_id(resource_id, "id", ("Appointment",))
        appointment = appointments_in(self.clinics()).filter(pk=pk).first() if pk else None
        if appointment is None:
            raise exceptions.NotFound(f"There is no Appointment/{resource_id} here.")
        return Response(mapping.appointment_resource(appointment), content_type=FHIR_JSON)


class UnknownView(FhirView):
    """Anything else under /fhir/r4/: an OperationOutcome 404 (also for resource types this server lacks)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request, *args, **kwargs):
        raise exceptions.NotFound("This server has nothing at this address; GET metadata lists what it serves.")

    post = put = patch = delete = get
