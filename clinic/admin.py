"""Admin for clinic administrators: catalogue, people, histories and appointments.

Appointments are changed through the booking services (front desk and API),
so their status and times are read-only here; the audit trail is append-only.
"""

from django.contrib import admin

from clinic import models


def admin_clinic_ids(request) -> list | None:
    """The clinics a non-superuser administers; None means every clinic (superuser)."""
    if request.user.is_superuser:
        return None
    return list(
        models.StaffMembership.objects.filter(user=request.user, role=models.StaffRole.CLINIC_ADMIN).values_list(
            "clinic_id", flat=True
        )
    )


class ClinicScopedChoices:
    """Limit foreign-key choices (in admins and inlines) to the administrator's clinics."""

    # Foreign key name -> lookup from the related model to its clinic.
    scoped_choices = {"clinic": "pk", "patient": "clinic", "practitioner": "clinic", "appointment": "clinic"}

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        ids = admin_clinic_ids(request)
        if ids is not None and db_field.name in self.scoped_choices:
            kwargs["queryset"] = db_field.related_model.objects.filter(
                **{f"{self.scoped_choices[db_field.name]}__in": ids}
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ClinicScopedAdmin(ClinicScopedChoices, admin.ModelAdmin):
    """A clinic administrator sees only their own clinics' rows; `clinic_path` leads to the clinic."""

    clinic_path = "clinic"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        ids = admin_clinic_ids(request)
        return queryset if ids is None else queryset.filter(**{f"{self.clinic_path}__in": ids})


@admin.register(models.ProcedureType)
class ProcedureTypeAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "duration_minutes", "bookable"]
    search_fields = ["code", "name"]


@admin.register(models.Medication, models.Condition, models.TreatmentArea)
class CatalogueAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]
    search_fields = ["code", "name"]


@admin.register(models.Clinic)
class ClinicAdmin(ClinicScopedAdmin):
    clinic_path = "pk"
    list_display = ["code", "name", "timezone"]
    search_fields = ["code", "name"]


@admin.register(models.StaffMembership)
class StaffMembershipAdmin(ClinicScopedAdmin):
    list_display = ["user", "clinic", "role"]
    list_filter = ["clinic", "role"]
    autocomplete_fields = ["user"]


class WorkingHoursInline(ClinicScopedChoices, admin.TabularInline):
    model = models.WorkingHours
    extra = 0


class TimeOffInline(ClinicScopedChoices, admin.TabularInline):
    model = models.TimeOff
    extra = 0


@admin.register(models.Practitioner)
class PractitionerAdmin(ClinicScopedAdmin):
    list_display = ["name", "clinic", "is_active"]
    list_filter = ["clinic", "is_active"]
    search_fields = ["name"]
    filter_horizontal = ["procedures"]
    inlines = [WorkingHoursInline, TimeOffInline]


class ProcedureRecordInline(ClinicScopedChoices, admin.TabularInline):
    model = models.ProcedureRecord
    fk_name = "patient"
    extra = 0
    fields = ["procedure", "performed_at", "area", "source", "notes"]


class MedicationCourseInline(ClinicScopedChoices, admin.TabularInline):
    model = models.MedicationCourse
    extra = 0
    fields = ["drug", "started_on", "ended_on", "notes"]


class PatientConditionInline(ClinicScopedChoices, admin.TabularInline):
    model = models.PatientCondition
    extra = 0


@admin.register(models.Patient)
class PatientAdmin(ClinicScopedAdmin):
    list_display = ["last_name", "first_name", "clinic", "date_of_birth", "email", "phone"]
    list_filter = ["clinic"]
    search_fields = ["last_name", "first_name", "email", "phone"]
    inlines = [PatientConditionInline, MedicationCourseInline, ProcedureRecordInline]


class AuditEventInline(ClinicScopedChoices, admin.TabularInline):
    model = models.AuditEvent
    extra = 0
    can_delete = False
    readonly_fields = ["action", "at", "actor_label", "actor_user", "reason", "details"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(models.Appointment)
class AppointmentAdmin(ClinicScopedAdmin):
    list_display = ["start_at", "procedure", "patient", "practitioner", "clinic", "status"]
    list_filter = ["clinic", "status", "procedure"]
    search_fields = ["patient__last_name", "patient__first_name"]
    date_hierarchy = "start_at"
    readonly_fields = [f.name for f in models.Appointment._meta.fields]
    inlines = [AuditEventInline]

    def has_add_permission(self, request):
        return False  # bookings go through the rule checks of the front desk or the API


@admin.register(models.AuditEvent)
class AuditEventAdmin(ClinicScopedAdmin):
    clinic_path = "appointment__clinic"
    list_display = ["at", "action", "appointment", "actor_label"]
    list_filter = ["action"]
    readonly_fields = ["appointment", "action", "at", "actor_user", "actor_label", "reason", "details"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
