"""The v1 endpoints: each reads its input, calls one service or selector, and shapes the answer.

Every lookup starts from the caller's clinics (api.access), so anything
outside them is a 404 (in the URL) or "no such ..." (in a body or query).
Errors are raised, never built here: api.problems maps them once.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import escape_uri_path
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.response import Response

from api import schema as docs
from api.access import caller_for
from api.filters import (
    AppointmentFilter,
    PatientFilter,
    PractitionerFilter,
    ProcedureFilter,
    refuse_repeated_and_empty,
)
from api.idempotency import idempotent
from api.merged import redirect_if_merged, refuse_if_merged
from api.problems import FieldProblem, HeaderTooLarge, UriTooLong, check_data, slot_data
from api.serializers import (
    AppointmentDetailOut,
    AppointmentOut,
    AvailabilityQuery,
    BookingIn,
    BookingOut,
    CancelIn,
    ClearIn,
    ClinicOut,
    ConditionLineIn,
    ConditionLineOut,
    EligibilityIn,
    EligibilityOut,
    EmptyIn,
    MedicationCourseEndIn,
    MedicationCourseIn,
    MedicationCourseOut,
    OrganisationOut,
    PatientCreateIn,
    PatientOut,
    PatientUpdateIn,
    PractitionerOut,
    ProcedureOut,
    ProcedureRecordIn,
    ProcedureRecordOut,
    RescheduleCheckIn,
    RescheduleIn,
    SlotOut,
)
from clinic import services as clinic_services
from clinic.models import Appointment, Clinic, MedicationCourse, Patient, Practitioner, ProcedureType
from clinic.selectors import appointments_in, patients_in, with_sequence
from core.errors import InvalidInput, NotFound
from core.etags import entity_tags
from core.ids import parse_uuid
from reminders.selectors import reminders_for_appointment
from scheduler import booking


def _input(serializer_class, request, **kwargs) -> dict:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# Below gunicorn's own limits (limit_request_line 4094 for the whole request line, limit_request_field_size
# 8190 per header line, docs/api.md), so that whatever gunicorn lets through and is still too long is
# answered here, as a problem document, rather than by gunicorn's bare HTML page.
MAX_URI_LENGTH = 4000
MAX_HEADER_LENGTH = 8000


class ApiView(generics.GenericAPIView):
    """Shared plumbing: the caller, and scoped look-ups that never reveal what lies outside."""

    filter_backends = ()  # only the lists that declare filters have them
    # No OPTIONS: there is no metadata to give (the OpenAPI schema is the description).
    http_method_names = ["get", "post", "put", "patch", "delete", "head"]

    def initial(self, request, *args, **kwargs):
        refuse_oversized(request)  # before authentication: a huge header is not read as a key
        super().initial(request, *args, **kwargs)

    @property
    def caller(self):
        return caller_for(self.request)

    def clinics(self):
        return self.caller.clinics()

    def patient_from_url(self) -> Patient:
        patient = self.caller.patient(parse_uuid(self.kwargs["patient_id"]))
        if patient is None:
            redirect_if_merged(self.request, self.clinics(), self.kwargs)  # a tombstone's address: 308
            raise NotFound("unknown_patient", "There is no such patient.")
        return patient

    def patient_from_body(self, value) -> Patient:
        patient = self.caller.patient(parse_uuid(value))
        if patient is None:
            refuse_if_merged(self.clinics(), value, field="patient")  # a tombstone: 400 patient_merged
            raise InvalidInput("unknown_patient", "There is no such patient.", field="patient")
        return patient

    def appointment_from_url(self, read=lambda appointments: appointments) -> Appointment:
        appointments = read(appointments_in(self.clinics()))
        appointment = appointments.filter(pk=parse_uuid(self.kwargs["appointment_id"])).first()
        if appointment is None:
            raise NotFound("unknown_appointment", "There is no such appointment.")
        return appointment

    def booking_clinic(self, data: dict, patient: Patient) -> Clinic:
        """Where a booking (or its check, or a slot search) named by `data` takes place, among the caller's
        clinics (the rule is the scheduler's: booking.booking_clinic)."""
        return booking.booking_clinic(
            patient=patient,
            clinic_id=data.get("clinic"),
            practitioner_id=data.get("practitioner"),
            within=self.caller.scope(),
        )

    def page(self, rows, serializer_class=None, *, data=None):
        """A paginated response of `rows` (serialized, or already-built dicts via `data`)."""
        page = self.paginate_queryset(rows)
        if data is not None:
            return self.get_paginated_response([data(row) for row in page])
        return self.get_paginated_response(serializer_class(page, many=True).data)


class LengthRequired(exceptions.APIException):
    """A body sent without a Content-Length (chunked): Django and DRF read only as many bytes as it states, so it
    would be taken as empty (a PATCH answered 200 with nothing changed)."""

    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = "Send the request body with a Content-Length header (not chunked): it was not read."
    default_code = "length_required"


# Methods whose body the API reads (a DELETE's or a GET's is never read).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def refuse_oversized(request) -> None:
    """414 for a path and query (its `?` counted) longer than MAX_URI_LENGTH, 431 for a longer header, and 411 for a
    body whose length is not stated (Transfer-Encoding, no Content-Length), before it could be read as empty."""
    meta = request.META
    query = meta.get("QUERY_STRING", "")
    uri_length = len(escape_uri_path(request.path)) + (len(query) + 1 if query else 0)
    if uri_length > MAX_URI_LENGTH:
        raise UriTooLong()
    for name, value in meta.items():
        if (name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")) and isinstance(value, str):
            if len(value) > MAX_HEADER_LENGTH:
                raise HeaderTooLarge()
    if request.method in _BODY_METHODS and meta.get("HTTP_TRANSFER_ENCODING") and not meta.get("CONTENT_LENGTH"):
        raise LengthRequired()


def _created(data, location: str) -> Response:
    return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})


# --- Clinics, catalogue, practitioners ---------------------------------------------------------


class OrganisationListApi(ApiView):
    serializer_class = OrganisationOut

    def get_queryset(self):
        return self.caller.organisations().order_by("name", "code")

    @extend_schema(
        tags=["catalogue"],
        operation_id="organisations_list",
        summary="Organisations in your scope (their clinics share each patient's record)",
        responses=docs.responses(200, OrganisationOut, many=True, bad_request=True),
    )
    def get(self, request):
        return self.page(self.get_queryset(), OrganisationOut)


class ClinicListApi(ApiView):
    serializer_class = ClinicOut

    def get_queryset(self):
        return self.clinics().order_by("name", "code")

    @extend_schema(
        tags=["catalogue"],
        operation_id="clinics_list",
        summary="Clinics in your scope",
        responses=docs.responses(200, ClinicOut, many=True, bad_request=True),
    )
    def get(self, request):
        return self.page(self.get_queryset(), ClinicOut)


class ProcedureListApi(ApiView):
    serializer_class = ProcedureOut
    queryset = ProcedureType.objects.order_by("name", "code")
    filterset_class = ProcedureFilter
    filter_backends = (DjangoFilterBackend,)

    @extend_schema(
        tags=["catalogue"],
        operation_id="procedures_list",
        summary="The procedure catalogue",
        responses=docs.responses(200, ProcedureOut, many=True, bad_request=True),
    )
    def get(self, request):
        return self.page(self.filter_queryset(self.get_queryset()), ProcedureOut)


class PractitionerListApi(ApiView):
    serializer_class = PractitionerOut
    filterset_class = PractitionerFilter
    filter_backends = (DjangoFilterBackend,)

    def get_queryset(self):
        return (
            Practitioner.objects.filter(clinic__in=self.clinics(), is_active=True)
            .prefetch_related("procedures")
            .order_by("name", "id")
            .distinct()
        )

    @extend_schema(
        tags=["catalogue"],
        operation_id="practitioners_list",
        summary="Practitioners in your clinics",
        responses=docs.responses(200, PractitionerOut, many=True, bad_request=True),
    )
    def get(self, request):
        return self.page(self.filter_queryset(self.get_queryset()), PractitionerOut)


# --- Patients -----------------------------------------------------------------------------------------


class PatientListCreateApi(ApiView):
    serializer_class = PatientOut
    filterset_class = PatientFilter
    filter_backends = (DjangoFilterBackend,)

    def get_queryset(self):
        return patients_in(self.clinics()).order_by("last_name", "first_name", "id")

    @extend_schema(
        tags=["patients"],
        operation_id="patients_list",
        summary="Patients in your clinics",
        responses=docs.responses(200, PatientOut, many=True, bad_request=True),
    )
    def get(self, request):
        return self.page(self.filter_queryset(self.get_queryset()), PatientOut)

    @extend_schema(
        tags=["patients"],
        operation_id="patients_create",
        summary="Register a patient",
        request=PatientCreateIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        examples=docs.PATIENT_EXAMPLES,
        responses=docs.responses(201, PatientOut, bad_request=True, idempotent=True, body=True, duplicate=True),
    )
    @idempotent
    def post(self, request):
        data = dict(_input(PatientCreateIn, request))
        clinic = self._clinic(data.pop("clinic", None))
        now = timezone.now()
        patient = clinic_services.patient_create(
            clinic=clinic, today=now.astimezone(clinic.tz).date(), changed_by=self.caller.changed_by(), **data
        )
        return _created(PatientOut(patient).data, reverse("api:patient-detail", args=[patient.pk]))

    def _clinic(self, value) -> Clinic:
        clinics = self.clinics()
        if value is None:
            only = list(clinics[:2])
            if len(only) != 1:
                raise InvalidInput("clinic_required", "Say which clinic the patient belongs to.", field="clinic")
            return only[0]
        pk = parse_uuid(value)
        clinic = clinics.filter(Q(code=value) | Q(pk=pk) if pk else Q(code=value)).first()
        if clinic is None:
            raise InvalidInput("unknown_clinic", "There is no such clinic.", field="clinic")
        return clinic


class PatientDetailApi(ApiView):
    serializer_class = PatientOut

    @extend_schema(
        tags=["patients"],
        operation_id="patients_retrieve",
        summary="One patient",
        responses=docs.responses(200, PatientOut),
    )
    def get(self, request, patient_id):
        return _versioned(PatientOut(patient := self.patient_from_url()).data, patient)

    @extend_schema(
        tags=["patients"],
        operation_id="patients_update",
        summary="Change a patient's details (not their clinic)",
        request=PatientUpdateIn,
        parameters=[docs.IF_MATCH],
        responses=docs.responses(200, PatientOut, bad_request=True, body=True, precondition=True),
    )
    def patch(self, request, patient_id):
        patient = self.patient_from_url()
        data = _input(PatientUpdateIn, request)
        today = timezone.now().astimezone(patient.clinic.tz).date()
        patient = clinic_services.patient_update(
            patient=patient, today=today, changed_by=self.caller.changed_by(), made_from=_if_match(request), **data
        )
        return _versioned(PatientOut(patient).data, patient)


class PatientProcedureListApi(ApiView):
    serializer_class = ProcedureRecordOut

    @extend_schema(
        tags=["patient history"],
        operation_id="patients_procedures_list",
        summary="The patient's procedure history",
        responses=docs.responses(200, ProcedureRecordOut, many=True, bad_request=True),
    )
    def get(self, request, patient_id):
        patient = self.patient_from_url()
        rows = patient.procedure_records.select_related("patient__clinic", "appointment__clinic", "clinic").order_by(
            "-performed_at", "id"
        )
        return self.page(rows, ProcedureRecordOut)

    @extend_schema(
        tags=["patient history"],
        operation_id="patients_procedures_create",
        summary="Record a past procedure (done here or reported)",
        request=ProcedureRecordIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        examples=docs.PROCEDURE_RECORD_EXAMPLES,
        responses=docs.responses(201, ProcedureRecordOut, bad_request=True, idempotent=True, body=True),
    )
    @idempotent
    def post(self, request, patient_id):
        patient = self.patient_from_url()
        data = _input(ProcedureRecordIn, request)
        record = clinic_services.procedure_record_add(
            clinic=booking.recording_clinic(patient=patient, clinic_id=data.get("clinic"), within=self.caller.scope()),
            patient=patient,
            procedure_code=data["procedure"],
            performed_at=data["performed_at"],
            now=timezone.now(),
            area_code=data.get("area"),
            source=data.get("source", "reported"),
            notes=data.get("notes", ""),
        )
        return _created(ProcedureRecordOut(record).data, reverse("api:patient-procedures", args=[patient.pk]))


class PatientMedicationListApi(ApiView):
    serializer_class = MedicationCourseOut

    @extend_schema(
        tags=["patient history"],
        operation_id="patients_medications_list",
        summary="The patient's medication courses",
        responses=docs.responses(200, MedicationCourseOut, many=True, bad_request=True),
    )
    def get(self, request, patient_id):
        patient = self.patient_from_url()
        return self.page(patient.medication_courses.order_by("-started_on", "id"), MedicationCourseOut)

    @extend_schema(
        tags=["patient history"],
        operation_id="patients_medications_create",
        summary="Record a medication course",
        request=MedicationCourseIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        examples=docs.MEDICATION_EXAMPLES,
        responses=docs.responses(201, MedicationCourseOut, bad_request=True, idempotent=True, body=True),
    )
    @idempotent
    def post(self, request, patient_id):
        patient = self.patient_from_url()
        data = _input(MedicationCourseIn, request)
        course = clinic_services.medication_course_add(
            patient=patient,
            drug_code=data["drug"],
            started_on=data["started_on"],
            ended_on=data.get("ended_on"),
            notes=data.get("notes", ""),
        )
        return _created(
            MedicationCourseOut(course).data, reverse("api:patient-medication-detail", args=[patient.pk, course.pk])
        )


class PatientMedicationDetailApi(ApiView):
    serializer_class = MedicationCourseOut

    def _course(self) -> MedicationCourse:
        patient = self.patient_from_url()
        course = patient.medication_courses.filter(pk=parse_uuid(self.kwargs["course_id"])).first()
        if course is None:
            raise NotFound("unknown_medication_course", "There is no such medication course.")
        return course

    @extend_schema(
        tags=["patient history"],
        operation_id="patients_medications_retrieve",
        summary="One medication course",
        responses=docs.responses(200, MedicationCourseOut),
    )
    def get(self, request, patient_id, course_id):
        return _versioned(MedicationCourseOut(course := self._course()).data, course)

    @extend_schema(
        tags=["patient history"],
        operation_id="patients_medications_end",
        summary="Record the end of a course",
        request=MedicationCourseEndIn,
        parameters=[docs.IF_MATCH],
        responses=docs.responses(200, MedicationCourseOut, bad_request=True, body=True, precondition=True),
    )
    def patch(self, request, patient_id, course_id):
        course = self._course()
        data = _input(MedicationCourseEndIn, request)
        course = clinic_services.medication_course_end(
            course=course, ended_on=data["ended_on"], made_from=_if_match(request)
        )
        return _versioned(MedicationCourseOut(course).data, course)


class PatientConditionsApi(ApiView):
    """The medical-history intake: read as a (paginated) list, replaced whole with PUT."""

    serializer_class = ConditionLineOut
    MAX_LINES = 200

    @extend_schema(
        tags=["patient history"],
        operation_id="patients_conditions_list",
        summary="The medical-history intake",
        responses=docs.responses(200, ConditionLineOut, many=True, bad_request=True),
    )
    def get(self, request, patient_id):
        patient = self.patient_from_url()
        # The version first, then the lines: a change between the two makes the pair look older than it is (a
        # needless 412 later), never newer (a PUT made from old lines passing as current).
        version = clinic_services.intake_version(patient.pk)
        rows = patient.conditions.order_by("condition_id", "area_id", "id")
        response = self.page(rows, ConditionLineOut)
        response["ETag"] = f'"{version}"'
        return response

    @extend_schema(
        tags=["patient history"],
        operation_id="patients_conditions_replace",
        summary="Replace the medical-history intake",
        request=ConditionLineIn(many=True),
        parameters=[docs.IF_MATCH],
        examples=docs.CONDITION_EXAMPLES,
        responses=docs.responses(200, ConditionLineOut, many=True, bad_request=True, body=True, precondition=True),
    )
    def put(self, request, patient_id):
        patient = self.patient_from_url()
        lines = _input(ConditionLineIn, request, many=True, max_length=self.MAX_LINES)
        self.paginator.check_query(request)  # before the write: its answer is a page
        with transaction.atomic():  # the version read under the lock the replacement took: this PUT's own
            clinic_services.conditions_replace(
                made_from=_if_match(request),
                patient=patient,
                lines=[
                    clinic_services.IntakeLine(
                        condition=line["condition"],
                        status=line["status"],
                        area=line.get("area"),
                        noted_on=line.get("noted_on"),
                    )
                    for line in lines
                ],
            )
            version = clinic_services.intake_version(patient.pk)
            # Paged in the GET's order, which its `next` link reads on: a page of the lines in the order sent would
            # skip one line there and repeat another.
            response = self.page(patient.conditions.order_by("condition_id", "area_id", "id"), ConditionLineOut)
        response["ETag"] = f'"{version}"'
        return response


def _versioned(data, row: Patient | MedicationCourse) -> Response:
    """One patient or course, with its version (clinic.services.record_version) as the ETag, for If-Match."""
    return Response(data, headers={"ETag": f'"{clinic_services.record_version(row)}"'})


def _if_match(request) -> frozenset[str] | None:
    """The versions an If-Match accepts (ETags of a GET, strong comparison: a weak tag matches nothing), for a
    change refused (412) once someone changed what it was made from; None without one, or with `*`. A header that
    is neither (`abc` unquoted, empty) is a 400 naming it: answering 412, "changed since", would send a client
    reading again and sending the same header for ever."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    tags = entity_tags(header)  # core.etags: one pass, no regular expression over what the client sent
    if tags is None:
        message = 'If-Match must be "*" or one or more ETags as a GET answers them, in double quotes ("…").'
        raise FieldProblem("invalid_if_match", "If-Match", message)
    return frozenset(tag[1:-1] for tag in tags if not tag.startswith("W/"))


# --- Eligibility and availability -----------------------------------------------------------------------


class EligibilityApi(ApiView):
    serializer_class = EligibilityOut

    @extend_schema(
        tags=["booking"],
        operation_id="eligibility_check",
        summary="Would this booking go through? (books nothing)",
        request=EligibilityIn,
        examples=docs.BOOKING_EXAMPLES,
        responses=docs.responses(200, EligibilityOut, bad_request=True, body=True),
    )
    def post(self, request):
        data = _input(EligibilityIn, request)
        patient = self.patient_from_body(data["patient"])
        check = booking.appointment_check(
            patient=patient,
            procedure_code=data["procedure"],
            start_at=data["start"],
            now=timezone.now(),
            area_code=data.get("area"),
            practitioner_id=data.get("practitioner"),
            clinic_id=data.get("clinic"),
            within=self.caller.scope(),
        )
        return Response({"eligible": check.eligible, "status": str(check.outcome), **check_data(check, check.tz)})


class AvailabilityApi(ApiView):
    serializer_class = SlotOut
    DEFAULT_DAYS = 14

    @extend_schema(
        tags=["booking"],
        operation_id="availability_list",
        summary="Free slots the patient may also have (interval rules applied)",
        parameters=[AvailabilityQuery],
        responses=docs.responses(200, SlotOut, many=True, bad_request=True),
    )
    def get(self, request):
        refuse_repeated_and_empty(request.query_params, AvailabilityQuery().fields)
        query = AvailabilityQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        patient = self.patient_from_body(params["patient"])
        clinic = self.booking_clinic(params, patient)
        now = timezone.now()
        start = params.get("from") or now
        end = params.get("to") or start + timedelta(days=self.DEFAULT_DAYS)
        slots = booking.free_appointment_slots(  # counted whole; only the page's days are made into slots
            patient=patient,
            procedure_code=params["procedure"],
            window_start=start,
            window_end=end,
            now=now,
            area_code=params.get("area"),
            practitioner_id=params.get("practitioner"),
            clinic_id=clinic.pk,
        )
        return self.page(slots, data=lambda slot: slot_data(slot, clinic.tz))


# --- Appointments ---------------------------------------------------------------------------------------


def _booking_data(result: booking.BookingResult) -> dict:
    data = dict(AppointmentOut(result.appointment).data)
    tz = result.appointment.clinic.tz
    data["warnings"] = check_data(result.check, tz)["warnings"]
    data["rulebook_version"] = result.check.rulebook_version
    return data


class AppointmentListCreateApi(ApiView):
    serializer_class = AppointmentOut
    filterset_class = AppointmentFilter
    filter_backends = (DjangoFilterBackend,)

    def get_queryset(self):
        return with_sequence(appointments_in(self.clinics())).order_by("start_at", "id")

    @extend_schema(
        tags=["booking"],
        operation_id="appointments_list",
        summary="Appointments in your clinics",
        responses=docs.responses(200, AppointmentOut, many=True, bad_request=True),
    )
    def get(self, request):
        return self.page(self.filter_queryset(self.get_queryset()), AppointmentOut)

    @extend_schema(
        tags=["booking"],
        operation_id="appointments_create",
        summary="Book an appointment",
        request=BookingIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        examples=docs.BOOKING_EXAMPLES,
        responses=docs.responses(201, BookingOut, bad_request=True, refusal=True, idempotent=True, body=True),
    )
    @idempotent
    def post(self, request):
        data = _input(BookingIn, request)
        patient = self.patient_from_body(data["patient"])
        result = booking.appointment_book(
            patient=patient,
            procedure_code=data["procedure"],
            start_at=data["start"],
            actor=self.caller.actor(),  # booking needs no clinician's right, so no clinic to judge it at
            now=timezone.now(),
            area_code=data.get("area"),
            practitioner_id=data.get("practitioner"),
            clinic_id=data.get("clinic"),  # where: the scheduler decides among the caller's clinics
            within=self.caller.scope(),
        )
        return _created(_booking_data(result), reverse("api:appointment-detail", args=[result.appointment.pk]))


class AppointmentDetailApi(ApiView):
    serializer_class = AppointmentDetailOut

    @extend_schema(
        tags=["booking"],
        operation_id="appointments_retrieve",
        summary="One appointment, with its care reminders",
        responses=docs.responses(200, AppointmentDetailOut),
    )
    def get(self, request, appointment_id):
        # The row and its change count in one statement (one snapshot): counted apart, a change committed between
        # the two would show a count past the state shown.
        appointment = self.appointment_from_url(with_sequence)
        data = dict(AppointmentOut(appointment).data)
        tz = appointment.clinic.tz
        data["reminders"] = [
            {**row, "due_at": row["due_at"].astimezone(tz).isoformat()}
            for row in reminders_for_appointment(appointment.pk)
        ]
        # The ETag a move's If-Match names: what this answer shows (clinic.services.appointment_version).
        return Response(data, headers={"ETag": f'"{clinic_services.appointment_version(appointment)}"'})


class AppointmentRescheduleApi(ApiView):
    serializer_class = BookingOut

    @extend_schema(
        tags=["booking"],
        operation_id="appointments_reschedule",
        summary="Move an appointment (same checks as booking)",
        request=RescheduleIn,
        parameters=[docs.IDEMPOTENCY_KEY, docs.IF_MATCH],
        responses=docs.responses(
            201,
            BookingOut,
            bad_request=True,
            refusal=True,
            conflict=True,
            idempotent=True,
            body=True,
            precondition=True,
        ),
    )
    @idempotent
    def post(self, request, appointment_id):
        appointment = self.appointment_from_url()
        data = _input(RescheduleIn, request)
        result = booking.appointment_reschedule(
            appointment=appointment,
            start_at=data["start"],
            actor=self.caller.actor(appointment.clinic_id),
            now=timezone.now(),
            practitioner_id=data.get("practitioner"),
            reason=data.get("reason", ""),
            made_from=_if_match(request),  # compared under the move's locks
        )
        # The contract: "POST /api/v1/appointments/ (and reschedule) answers: 201 with the appointment", and a
        # 201 names what it is about (the schema requires Location): the appointment, moved.
        return _created(_booking_data(result), reverse("api:appointment-detail", args=[result.appointment.pk]))


class AppointmentRescheduleCheckApi(ApiView):
    """The reschedule's dry run: the same checks, answered as eligibility answers; moves nothing."""

    serializer_class = EligibilityOut

    @extend_schema(
        tags=["booking"],
        operation_id="appointments_reschedule_check",
        summary="Would this move go through? (moves nothing)",
        request=RescheduleCheckIn,
        responses=docs.responses(200, EligibilityOut, bad_request=True, conflict=True, body=True),
    )
    def post(self, request, appointment_id):
        appointment = self.appointment_from_url()
        data = _input(RescheduleCheckIn, request)
        check = booking.appointment_reschedule_check(
            appointment=appointment,
            start_at=data["start"],
            now=timezone.now(),
            practitioner_id=data.get("practitioner"),
        )
        return Response(
            {"eligible": check.eligible, "status": str(check.outcome), **check_data(check, appointment.clinic.tz)}
        )


class _AppointmentAction(ApiView):
    """A status change: read the body, call the service, answer with the appointment."""

    serializer_class = AppointmentOut
    input_class = EmptyIn

    def act(self, appointment: Appointment, actor: booking.Actor, data: dict, made_from) -> Appointment:
        raise NotImplementedError

    @idempotent
    def post(self, request, appointment_id):
        appointment = self.appointment_from_url()
        data = _input(self.input_class, request)
        # If-Match: compared under the change's locks (scheduler.lifecycle.transition); 412 when it names no
        # version the appointment has.
        changed = self.act(appointment, self.caller.actor(appointment.clinic_id), data, _if_match(request))
        return Response(AppointmentOut(changed).data)


def _action_schema(summary: str, input_class, *, forbidden: bool = False, refusal: bool = False):
    return extend_schema(
        tags=["booking"],
        summary=summary,
        request=input_class,
        parameters=[docs.IDEMPOTENCY_KEY, docs.IF_MATCH],
        responses=docs.responses(
            200,
            AppointmentOut,
            bad_request=True,
            conflict=True,
            refusal=refusal,
            idempotent=True,
            forbidden=forbidden,
            body=True,
            precondition=True,
        ),
    )


@_action_schema("Cancel an appointment", CancelIn)
class AppointmentCancelApi(_AppointmentAction):
    input_class = CancelIn

    def act(self, appointment, actor, data, made_from):
        return booking.appointment_cancel(
            appointment=appointment, actor=actor, now=timezone.now(), reason=data.get("reason", ""), made_from=made_from
        )


@_action_schema(
    "Record the treatment as done (clinician's right): it enters the history, post-care starts", EmptyIn, forbidden=True
)
class AppointmentCompleteApi(_AppointmentAction):
    def act(self, appointment, actor, data, made_from):
        return booking.appointment_complete(
            appointment=appointment, actor=actor, now=timezone.now(), made_from=made_from
        )


@_action_schema(
    "Clear a booking pending clearance (clinician's right), with a reason", ClearIn, forbidden=True, refusal=True
)
class AppointmentClearApi(_AppointmentAction):
    input_class = ClearIn

    def act(self, appointment, actor, data, made_from):
        return booking.appointment_clear(
            appointment=appointment, actor=actor, now=timezone.now(), reason=data["reason"], made_from=made_from
        )


@_action_schema("Mark that the patient did not come (clinician's right)", EmptyIn, forbidden=True)
class AppointmentNoShowApi(_AppointmentAction):
    def act(self, appointment, actor, data, made_from):
        return booking.appointment_mark_no_show(
            appointment=appointment, actor=actor, now=timezone.now(), made_from=made_from
        )
