"""Admin for clinic administrators: catalogue, people, histories and appointments.

Appointments are changed through the booking services (front desk and API),
so their status and times are read-only here; the audit trail is append-only.
"""

from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet, URLField
from django.utils import timezone

from clinic import models, setting_checks
from clinic.forms import (
    ConditionOncePerAreaFormSet,
    ForgivingAutocompleteSelect,
    PatientAdminForm,
    ProcedureRecordsFormSet,
    StaleRowsFormSet,
    WorkingHoursFormSet,
)
from clinic.record_changes import ChangedBy, ContactChange, patient_contact_changed
from clinic.selectors import in_time_off, outside_working_hours
from clinic.services import CONTACT_FIELDS, course_dates_in_range, patient_record_edited, performed_at_checked
from core.errors import ErrorCode, InvalidInput
from core.ids import parse_uuid
from core.timeutils import YEARS_OUT_OF_RANGE, wall_moment, within_years


def admin_clinic_ids(request) -> list | None:
    """The clinics a non-superuser administers; None means every clinic (superuser)."""
    if request.user.is_superuser:
        return None
    grants = models.StaffMembership.objects.filter(user=request.user, role=models.StaffRole.CLINIC_ADMIN)
    return list(
        models.Clinic.objects.filter(
            Q(pk__in=grants.values("clinic_id"))
            | Q(organisation_id__in=grants.filter(clinic=None).values("organisation_id"))
        ).values_list("pk", flat=True)
    )


def visits_still_to_come(appointments: QuerySet) -> QuerySet:
    """The active ones of `appointments` not over yet, the first first: what a change of settings over them (hours,
    time off, a practitioner switched off or moved, a clinic's zone) leaves booked as they are."""
    return appointments.filter(status__in=models.ACTIVE_APPOINTMENT_STATUSES, end_at__gt=timezone.now()).order_by(
        "start_at"
    )


def booked_still_to_come(count: int) -> str:
    """ "1 booked appointment still to come", "2 booked appointments still to come"."""
    return f"{count} booked appointment{'s' if count != 1 else ''} still to come"


def refuse_years_out_of_range(form: forms.BaseForm, *names: str) -> None:
    """Refuse on its field a date or time outside the years the services take (1900 to 2999, as the API's and the
    desk's fields): stored, a course ended or time off until 9999 overflows every later check of the bookings (year
    10000), a procedure in year 1 every reading of it in a zone west of UTC (year 0)."""
    for name in names:
        value = form.cleaned_data.get(name)
        if not isinstance(value, date):
            continue
        read = [value, value.astimezone(UTC)] if isinstance(value, datetime) and value.tzinfo else [value]
        if not all(within_years(moment) for moment in read):
            form.add_error(name, ValidationError(YEARS_OUT_OF_RANGE, code=ErrorCode.DATE_OUT_OF_RANGE.value))


class ReadOnly:
    """A trail the admin shows and nobody edits there: no adding, changing or deleting."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ClinicScopedChoices:
    """Limit foreign-key choices (in admins and inlines) to the administrator's clinics."""

    # Foreign key name -> lookup from the related model to its clinic.
    # Patients belong to the organisation: every clinic of it sees them.
    scoped_choices = {
        "clinic": "pk",
        "patient": "organisation__clinics",
        "practitioner": "clinic",
        "appointment": "clinic",
        "organisation": "clinics",
    }

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            # A junk id posted by hand comes back as a form error, not a 500 while re-rendering the choice.
            kwargs["widget"] = ForgivingAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        ids = admin_clinic_ids(request)
        if ids is not None and db_field.name in self.scoped_choices:
            kwargs["queryset"] = db_field.related_model.objects.filter(
                **{f"{self.scoped_choices[db_field.name]}__in": ids}
            ).distinct()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ClinicScopedAdmin(ClinicScopedChoices, admin.ModelAdmin):
    """A clinic administrator sees only their own clinics' rows; `clinic_path` leads to the clinic
    (or `organisation_path` to the organisation, for what the organisation's clinics share)."""

    clinic_path = "clinic"
    organisation_path = ""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        ids = admin_clinic_ids(request)
        if ids is None:
            return queryset
        if self.organisation_path:
            organisations = models.Clinic.objects.filter(pk__in=ids).values("organisation_id")
            return queryset.filter(**{f"{self.organisation_path}__in": organisations})
        return queryset.filter(**{f"{self.clinic_path}__in": ids})


class SharedCatalogue:
    """What every organisation shares (the procedure catalogue, medications, conditions, areas, the reminder
    texts): a clinic administrator reads it (Django's change permission stands for the view one), only the
    platform's operators (superusers) change it. A procedure's duration or a reminder's text changed by one
    organisation would change every other's."""

    def has_add_permission(self, request, *args) -> bool:
        return request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)


@admin.register(models.ProcedureType)
class ProcedureTypeAdmin(SharedCatalogue, admin.ModelAdmin):
    list_display = ["code", "name", "duration_minutes", "bookable"]
    search_fields = ["code", "name"]


@admin.register(models.Medication, models.Condition, models.TreatmentArea)
class CatalogueAdmin(SharedCatalogue, admin.ModelAdmin):
    list_display = ["code", "name"]
    search_fields = ["code", "name"]


@admin.register(models.Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]
    search_fields = ["code", "name"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        ids = admin_clinic_ids(request)
        return queryset if ids is None else queryset.filter(clinics__in=ids).distinct()

    def has_add_permission(self, request):
        return request.user.is_superuser  # organisations are made by the platform's operators

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(models.Clinic)
class ClinicAdmin(ClinicScopedAdmin):
    clinic_path = "pk"
    formfield_overrides = {URLField: {"assume_scheme": "https"}}  # an address typed without one is https
    list_display = ["code", "name", "organisation", "timezone"]
    list_filter = [("organisation", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request, obj=None):
        # Moving a site to another organisation would carry no patients with it: operators only.
        return () if request.user.is_superuser else ("organisation",)

    def save_model(self, request, obj, form, change) -> None:
        """Those who hear of a clinic's settings are told what changed (the reminders re-time what is still to go
        when the zone changed), and a new zone over visits still to come is said: each keeps its instant, so it
        now reads at another local time, which the patients were not told."""
        super().save_model(request, obj, form, change)
        if not form.changed_data:
            return
        setting_checks.clinic_settings_saved(clinic=obj, changed=set(form.changed_data), now=timezone.now())
        before = form.initial.get("timezone")
        if change and "timezone" in form.changed_data and before:
            self._warn_of_visits_read_anew(request, obj, ZoneInfo(before))

    def _warn_of_visits_read_anew(self, request, clinic: models.Clinic, before: tzinfo) -> None:
        now_read = clinic.tz

        def wall(moment: datetime, tz: tzinfo) -> datetime:
            return timezone.localtime(moment, tz).replace(tzinfo=None, fold=0)

        starts = visits_still_to_come(models.Appointment.objects.filter(clinic=clinic)).values_list(
            "start_at", flat=True
        )
        moved = [start for start in starts if wall(start, before) != wall(start, now_read)]
        if not moved:
            return
        count = len(moved)
        self.message_user(
            request,
            f"{clinic.name} has {booked_still_to_come(count)} that now read{'s' if count == 1 else ''} at another "
            f"local time: each keeps its moment, now shown in {clinic.timezone} (the first, "
            f"{wall_moment(moved[0], before)} in {before}, is now {wall_moment(moved[0], now_read)}). Tell the "
            "patients the new time, or move them.",
            level=messages.WARNING,
        )


def admin_organisation_ids(request) -> list | None:
    """The organisations a non-superuser administers as a whole (an organisation-wide clinic_admin grant); None
    means every one (superuser). A site's administrator administers none: their clinic is not its organisation."""
    if request.user.is_superuser:
        return None
    return list(
        models.StaffMembership.objects.filter(
            user=request.user, role=models.StaffRole.CLINIC_ADMIN, clinic=None
        ).values_list("organisation_id", flat=True)
    )


def staff_of(clinic_ids) -> QuerySet:
    """The users who hold a role at one of these clinics, or at the whole organisation of one."""
    return (
        get_user_model()
        .objects.filter(
            Q(memberships__clinic__in=clinic_ids)
            | Q(memberships__clinic=None, memberships__organisation__clinics__in=clinic_ids)
        )
        .distinct()
    )


@admin.register(models.StaffMembership)
class StaffMembershipAdmin(ClinicScopedAdmin):
    """A site's administrator grants roles at their clinics; only an organisation's administrator (or a
    superuser) grants the whole organisation, or changes such a grant. The users offered are their own staff and
    accounts with no role anywhere yet (new ones), never another organisation's staff or a superuser."""

    list_display = ["user", "clinic", "organisation", "role"]
    list_select_related = ["user", "clinic", "organisation"]  # nullable keys: a bare select_related() skips them
    list_filter = [
        ("clinic", admin.RelatedOnlyFieldListFilter),
        ("organisation", admin.RelatedOnlyFieldListFilter),
        "role",
    ]
    autocomplete_fields = ["user"]

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        ids = admin_clinic_ids(request)
        if ids is None:
            return queryset
        return queryset.filter(Q(clinic__in=ids) | Q(clinic=None, organisation__clinics__in=ids)).distinct()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        ids = admin_clinic_ids(request)
        if ids is not None and db_field.name == "organisation":
            field.queryset = models.Organisation.objects.filter(pk__in=admin_organisation_ids(request))
        if ids is not None and db_field.name == "user":
            users = get_user_model().objects.filter(is_superuser=False)
            field.queryset = users.filter(Q(pk__in=staff_of(ids)) | Q(memberships__isnull=True)).distinct()
        return field

    def get_form(self, request, obj=None, change=False, **kwargs):
        """An account holding an organisation-wide role is its organisation's administrators' to change: a site's
        administrator giving it a role at their site (which wins there over the organisation's) is refused on the
        user field, or the organisation's administrator could be made a receptionist at that site."""
        form = super().get_form(request, obj, change=change, **kwargs)
        mine = admin_organisation_ids(request)
        if mine is None or "user" not in form.base_fields:
            return form

        class StaffRoleForm(form):
            def clean_user(self):
                user = self.cleaned_data.get("user")
                wide = (
                    models.StaffMembership.objects.filter(user=user, clinic=None)
                    .exclude(organisation_id__in=mine)
                    .select_related("organisation")
                    .first()
                )
                if user is not None and wide is not None:
                    raise ValidationError(
                        f"{user.get_username()} holds a role across the whole of {wide.organisation.name}: only an "
                        "administrator of the whole organisation gives them a role at one of its clinics.",
                        code="organisation_wide_role",
                    )
                return user

        return StaffRoleForm

    def autocomplete_narrow(self, request, field_name: str, queryset: QuerySet, term: str) -> QuerySet:
        """What the role form's user search shows (config.admin.FormFieldAutocompleteJsonView): never an inactive
        account; to a clinic administrator, their own staff by any search, and an account with no role anywhere
        (anyone's future staff, of any organisation) only by its exact username or e-mail, never by browsing."""
        if field_name != "user":
            return queryset
        queryset = queryset.filter(is_active=True)
        ids = admin_clinic_ids(request)
        if ids is None:
            return queryset
        term = term.strip()
        exact = (Q(username__iexact=term) | Q(email__iexact=term)) if term else Q(pk__in=[])
        mine = Q(pk__in=staff_of(ids).values("pk"))
        return queryset.filter(mine | (exact & ~Q(pk__in=models.StaffMembership.objects.values("user_id"))))

    def _may_change(self, request, obj) -> bool:
        if obj is None or obj.clinic_id is not None:
            return True
        organisations = admin_organisation_ids(request)
        return organisations is None or obj.organisation_id in organisations

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may_change(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may_change(request, obj) and super().has_delete_permission(request, obj)


class WorkingHoursInline(ClinicScopedChoices, admin.TabularInline):
    model = models.WorkingHours
    formset = WorkingHoursFormSet  # one day's periods neither overlap nor touch (clinic.forms)
    extra = 0


class TimeOffForm(forms.ModelForm):
    """A row of a practitioner's time off: in the years the services take, as the desk's and the API's dates (time
    off "until further notice" typed as 31/12/9999 made every booking with the practitioner overflow)."""

    def clean(self):
        cleaned = super().clean()
        refuse_years_out_of_range(self, "start_at", "end_at")
        return cleaned


class TimeOffInline(ClinicScopedChoices, admin.TabularInline):
    model = models.TimeOff
    form = TimeOffForm
    extra = 0


@admin.register(models.Practitioner)
class PractitionerAdmin(ClinicScopedAdmin):
    list_display = ["name", "clinic", "is_active"]
    list_filter = [("clinic", admin.RelatedOnlyFieldListFilter), "is_active"]
    search_fields = ["name"]
    filter_horizontal = ["procedures"]
    inlines = [WorkingHoursInline, TimeOffInline]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        ids = admin_clinic_ids(request)
        if ids is not None and db_field.name == "user":  # their own staff, not every tenant's users
            field.queryset = staff_of(ids)
        return field

    def save_related(self, request, form, formsets, change):
        """Time off or working hours changed over bookings already made do not move them, nor does switching the
        practitioner off or moving them to another site: say so, with where to find them. The time off and hours
        are weighed against the visits at the clinic they work at now only (read in its zone): a visit left at a
        site they moved from, or of a practitioner switched off, is under "Practitioner no longer here" there, never
        under "Practitioner away" or "Outside working hours"."""
        super().save_related(request, form, formsets, change)
        practitioner = form.instance
        to_come = visits_still_to_come(models.Appointment.objects.filter(practitioner=practitioner))
        if change:
            self._warn_of_visits_left(request, form, to_come)
            self._warn_of_treatments_taken_off(request, form, to_come)
        here = to_come.filter(clinic_id=practitioner.clinic_id) if practitioner.is_active else to_come.none()
        away = in_time_off(here).count()
        outside = outside_working_hours(list(here), list(practitioner.working_hours.all()), practitioner.clinic.tz)
        if outside:
            self.message_user(
                request,
                f"{practitioner.name} has {booked_still_to_come(len(outside))} outside their working hours (the "
                f"first on {wall_moment(outside[0].start_at, practitioner.clinic.tz)}). They stay booked until "
                'moved or cancelled: the front desk\'s Today page lists them under "Outside working hours".',
                level=messages.WARNING,
            )
        if away:
            self.message_user(
                request,
                f"{practitioner.name} has {booked_still_to_come(away)} in their time off. They stay booked until "
                'moved or cancelled: the front desk\'s Today page lists them under "Practitioner away".',
                level=messages.WARNING,
            )

    def _warn_of_treatments_taken_off(self, request, form, to_come: QuerySet) -> None:
        """Treatments taken off the practitioner with visits for them still to come: they stay booked with someone
        the booking service would now refuse for them."""
        if "procedures" not in form.changed_data:
            return
        before = {getattr(each, "pk", each) for each in form.initial.get("procedures") or ()}
        taken_off = before - set(form.instance.procedures.values_list("pk", flat=True))
        left = to_come.filter(procedure_id__in=taken_off)
        first = left.select_related("clinic", "procedure").first()
        if first is None:
            return
        count = left.count()
        names = ", ".join(
            models.ProcedureType.objects.filter(pk__in=taken_off).order_by("name").values_list("name", flat=True)
        )
        self.message_user(
            request,
            f"{form.instance.name} no longer does {names} and has {booked_still_to_come(count)} for "
            f"{'it' if len(taken_off) == 1 else 'them'} (the first on {wall_moment(first.start_at, first.clinic.tz)}, "
            f"{first.procedure.name}). They stay booked until moved or cancelled.",
            level=messages.WARNING,
        )

    def _warn_of_visits_left(self, request, form, to_come: QuerySet) -> None:
        """Switched off, or moved to another site, with visits still to come: they stay booked with someone who no
        longer works (there)."""
        practitioner = form.instance
        if "is_active" in form.changed_data and not practitioner.is_active:
            first = to_come.select_related("clinic").first()
            if first is not None:
                count = to_come.count()
                self.message_user(
                    request,
                    f"{practitioner.name} is no longer active and has {booked_still_to_come(count)} (the first on "
                    f"{wall_moment(first.start_at, first.clinic.tz)}). They stay booked until moved or "
                    'cancelled: the front desk\'s Today page lists them under "Practitioner no longer here".',
                    level=messages.WARNING,
                )
        before = form.initial.get("clinic")
        if "clinic" in form.changed_data and before is not None:
            there = to_come.filter(clinic_id=before)
            first = there.select_related("clinic").first()
            if first is not None:
                count = there.count()
                self.message_user(
                    request,
                    f"{practitioner.name} now works at {practitioner.clinic.name} and has {booked_still_to_come(count)} "
                    f"at {first.clinic.name} (the first on {wall_moment(first.start_at, first.clinic.tz)}). They "
                    f"stay booked there until moved or cancelled: {first.clinic.name}'s calendar still shows them.",
                    level=messages.WARNING,
                )


def choices_once_per_request(field, db_field, request):
    """Give an inline's dropdown the choices read once for the request: every row of the inline (and its empty
    form) copies its field, and a copied ModelChoiceField reads its queryset again, a query per row and field.
    The field keeps its (scoped) queryset, which still validates what is posted."""
    if field is None or not hasattr(field, "queryset"):
        return field
    cache = request.__dict__.setdefault("_inline_choices", {})
    key = (db_field.model._meta.label, db_field.name)  # the same choices for the same request
    if key not in cache:
        cache[key] = list(field.choices)
    field.choices = cache[key]
    return field


class RecordInline(ClinicScopedChoices, admin.TabularInline):
    """A part of the clinical record: read-only on a record merged into another (a tombstone), where
    nothing may be added (its history now lives on the survivor's record)."""

    extra = 0
    formset = StaleRowsFormSet  # a row changed meanwhile is never written back over (clinic.forms)
    row_related: tuple[str, ...] = ()  # what a row's name reads, selected with the rows

    def get_queryset(self, request):
        return super().get_queryset(request).select_related(*self.row_related)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return choices_once_per_request(field, db_field, request)

    def _live(self, obj) -> bool:
        return obj is None or obj.merged_into_id is None

    def has_add_permission(self, request, obj=None) -> bool:
        return self._live(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._live(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._live(obj) and super().has_delete_permission(request, obj)


class ProcedureRecordForm(forms.ModelForm):
    """A row of the patient's procedure history: a date set (or corrected) to one still to come, or outside the years
    1900 to 2999, is refused as the API and the desk refuse it (clinic.services.procedure_record_add,
    performed_in_future, date_out_of_range); a row left as it is is not checked again."""

    def clean_performed_at(self):
        performed = self.cleaned_data.get("performed_at")
        if performed is None or "performed_at" not in self.changed_data:
            return performed
        try:
            return performed_at_checked(performed, now=timezone.now())
        except InvalidInput as error:
            raise ValidationError(error.message, code=error.code.value) from None


class ProcedureRecordInline(RecordInline):
    model = models.ProcedureRecord
    form = ProcedureRecordForm
    formset = ProcedureRecordsFormSet  # a line a visit's completion wrote stays that visit's (its notes excepted)
    fk_name = "patient"
    extra = 0
    fields = ["procedure", "performed_at", "area", "source", "notes"]
    row_related = ("procedure",)


class MedicationCourseForm(forms.ModelForm):
    """A row of the patient's medication courses: its dates in the years the API takes
    (clinic.services.course_dates_in_range: a course ended in 9999 overflowed every later booking's checks)."""

    def clean(self):
        cleaned = super().clean()
        dates = {name: cleaned.get(name) for name in ("started_on", "ended_on")}
        try:
            course_dates_in_range(**dates)
        except InvalidInput as error:
            for name, said in error.errors.items():
                self.add_error(name, ValidationError(said, code=error.code.value))
        return cleaned


class MedicationCourseInline(RecordInline):
    model = models.MedicationCourse
    form = MedicationCourseForm
    fields = ["drug", "started_on", "ended_on", "notes"]
    row_related = ("drug",)


class PatientConditionInline(RecordInline):
    model = models.PatientCondition
    formset = ConditionOncePerAreaFormSet
    row_related = ("condition",)


@admin.register(models.Patient)
class PatientAdmin(ClinicScopedAdmin):
    organisation_path = "organisation"
    list_display = [
        "last_name",
        "first_name",
        "organisation",
        "clinic",
        "date_of_birth",
        "email",
        "phone",
        "merged_into",
    ]
    list_select_related = ["organisation", "clinic", "merged_into"]  # merged_into is nullable: named, not followed
    list_filter = [
        ("organisation", admin.RelatedOnlyFieldListFilter),
        ("clinic", admin.RelatedOnlyFieldListFilter),
        ("merged_into", admin.EmptyFieldListFilter),
    ]
    # A merge is made on the front desk or through the API (clinic.merging), never by editing these.
    readonly_fields = ["organisation", "merged_into", "merged_at"]
    search_fields = ["last_name", "first_name", "email", "phone"]
    inlines = [PatientConditionInline, MedicationCourseInline, ProcedureRecordInline]
    form = PatientAdminForm  # what the admin did not change stays as stored now

    def get_deleted_objects(self, objs, request):
        """Trails that go with their patient (their admins say `deleted_with_its_patient`: the consent records) need
        no delete permission of their own, which nobody has: a patient registered by mistake is still deleted
        (docs/organisations.md), and a consent record is never deleted on its own."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for model, model_admin in self.admin_site._registry.items():
            if getattr(model_admin, "deleted_with_its_patient", False):
                perms_needed.discard(model._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        ids = admin_clinic_ids(request)
        if ids is not None and db_field.name == "clinic":
            # A patient is the organisation's: their home may be any clinic of it, a sister site's too (offered only
            # a site's own, the record of a patient at home at the sister site could not be saved at all).
            organisations = models.Clinic.objects.filter(pk__in=ids).values("organisation")
            field.queryset = models.Clinic.objects.filter(organisation__in=organisations)
        return field

    def has_change_permission(self, request, obj=None) -> bool:
        """A record merged into another (a tombstone) is read-only: nothing is edited on it (docs/organisations.md);
        what it held still counts (its old number offers its survivor)."""
        live = obj is None or obj.merged_into_id is None
        return live and super().has_change_permission(request, obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """A post to a tombstone's page (one opened before the merge, say) saves nothing and answers its read-only
        page again, saying why, rather than Django's bare 403."""
        pk = parse_uuid(object_id) if object_id and request.method == "POST" else None
        if pk is not None and "_saveasnew" not in request.POST:
            survivor = models.Patient.objects.filter(pk=pk).values_list("merged_into_id", flat=True).first()
            if survivor is not None:
                self.message_user(
                    request,
                    "This record was merged into another: nothing is edited on it, and nothing was saved. Make the "
                    "change on the record it was merged into.",
                    level=messages.ERROR,
                )
                request.method = "GET"  # the read-only page, as drawn for anyone who opens it now
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None:
            # Race condition: the patient may reply STOP, or change their choices on their page, or the desk or a
            # platform correct their number, while this form is open. What each field was drawn with goes with it
            # (PatientAdminForm keeps those the admin left alone as they are now).
            for field in form.base_fields.values():
                field.show_hidden_initial = True
        return form

    def get_object(self, request, object_id, from_field=None):
        """On a post, the patient's row is locked (as every service locks it first) before it and its rows are
        read: the change view runs in one transaction, so what the forms compare with the page (PatientAdminForm,
        StaleRowsFormSet) stays as compared until it is saved."""
        pk = parse_uuid(object_id) if request.method == "POST" else None
        if pk is not None and transaction.get_connection().in_atomic_block:
            list(models.Patient.objects.select_for_update(of=("self",)).filter(pk=pk).values_list("pk", flat=True))
        return super().get_object(request, object_id, from_field)

    def save_model(self, request, obj, form, change) -> None:
        """How the patient was reached before this save, for the reminders (save_related); the row is locked."""
        if change:
            current = models.Patient.objects.select_for_update(of=("self",)).get(pk=obj.pk)
            form.contact_before = {name: getattr(current, name) for name in CONTACT_FIELDS}
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        """The history, medication courses and intake edited here are the record the rules read: the patient's
        bookings are re-checked in this transaction (an isotretinoin course entered here left a microneedling
        booking confirmed)."""
        super().save_related(request, form, formsets, change)
        edited = [
            str(f.model._meta.verbose_name_plural)
            for f in formsets
            if f.new_objects or f.changed_objects or f.deleted_objects
        ]
        if edited:
            patient_record_edited(patient_id=form.instance.pk, parts=edited, now=timezone.now())
        if set(form.changed_data) & set(CONTACT_FIELDS):  # how they are reached: tell the reminders, and who
            before = getattr(form, "contact_before", {}) if change else {}
            by = ChangedBy(via="admin", label=f"{request.user.get_username()} (admin)")
            patient_contact_changed(
                patient_id=form.instance.pk, now=timezone.now(), change=ContactChange(by=by, before=before)
            )


@admin.register(models.PatientMerge)
class PatientMergeAdmin(ReadOnly, admin.ModelAdmin):
    """The merge trail: read-only."""

    list_display = ["at", "merged", "into", "actor_label"]
    readonly_fields = ["merged", "into", "at", "actor_user", "actor_label", "details"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("merged", "into")
        ids = admin_clinic_ids(request)
        if ids is None:
            return queryset
        return queryset.filter(into__organisation__in=models.Clinic.objects.filter(pk__in=ids).values("organisation"))


@admin.register(models.MergeWarningCheck)
class MergeWarningCheckAdmin(ReadOnly, admin.ModelAdmin):
    """Who checked which warning of a merge, when, with what note (the front desk records them): read-only."""

    list_display = ["checked_at", "checked_by_name", "appointment", "merge"]
    readonly_fields = ["merge", "appointment", "message", "checked_at", "checked_by", "checked_by_name", "note"]

    def get_queryset(self, request):
        queryset = (
            super().get_queryset(request).select_related("merge", "appointment__procedure", "appointment__patient")
        )
        ids = admin_clinic_ids(request)
        if ids is None:
            return queryset
        organisations = models.Clinic.objects.filter(pk__in=ids).values("organisation")
        return queryset.filter(merge__into__organisation__in=organisations)


class AuditEventInline(ClinicScopedChoices, admin.TabularInline):
    model = models.AuditEvent
    extra = 0
    can_delete = False
    readonly_fields = ["action", "at", "actor_label", "actor_user", "reason", "details"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor_user")  # shown on every row

    def has_add_permission(self, request, obj=None):
        return False


class OutcomeFilter(admin.SimpleListFilter):
    """Visits that are over and that nobody closed (completed or a no-show): the desk's Today asks about those of the
    last 90 days (frontdesk.selectors.awaiting_outcome); here every one, however old, oldest first by the list's
    order. No aftercare went to the patient for any of them."""

    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("missing", "Over, no outcome recorded")]

    def queryset(self, request, queryset):
        if self.value() == "missing":
            return queryset.filter(status=models.AppointmentStatus.CONFIRMED, end_at__lte=timezone.now())
        return queryset


@admin.register(models.Appointment)
class AppointmentAdmin(ClinicScopedAdmin):
    list_display = ["start_at", "procedure", "patient", "practitioner", "clinic", "status"]
    list_filter = [("clinic", admin.RelatedOnlyFieldListFilter), "status", OutcomeFilter, "procedure"]
    search_fields = ["patient__last_name", "patient__first_name"]
    date_hierarchy = "start_at"
    readonly_fields = [f.name for f in models.Appointment._meta.fields]
    inlines = [AuditEventInline]

    def has_add_permission(self, request):
        return False  # bookings go through the rule checks of the front desk or the API

    def has_change_permission(self, request, obj=None) -> bool:
        # Read-only, truly: a Save here wrote the whole row back as the page read it, undoing a cancellation (or any
        # change) the desk or the API made meanwhile, with no audit. Django's view permission (or its change one)
        # still shows the page.
        return False


@admin.register(models.AuditEvent)
class AuditEventAdmin(ReadOnly, ClinicScopedAdmin):
    clinic_path = "appointment__clinic"
    list_display = ["at", "action", "appointment", "actor_label"]
    list_filter = ["action"]
    readonly_fields = ["appointment", "action", "at", "actor_user", "actor_label", "reason", "details"]
