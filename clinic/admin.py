"""Admin for clinic administrators: catalogue, people, histories and appointments.

Appointments are changed through the booking services (front desk and API),
so their status and times are read-only here; the audit trail is append-only.
"""
from django.contrib import admin

from clinic import models


@admin.register(models.ProcedureType)
class ProcedureTypeAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "duration_minutes", "bookable"]
    search_fields = ["code", "name"]


@admin.register(models.Medication, models.Condition, models.TreatmentArea)
class CatalogueAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]
    search_fields = ["code", "name"]


@admin.register(models.Clinic)
class ClinicAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "timezone"]
    search_fields = ["code", "name"]


@admin.register(models.StaffMembership)
class StaffMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "clinic", "role"]
    list_filter = ["clinic", "role"]
    autocomplete_fields = ["user"]


class WorkingHoursInline(admin.TabularInline):
    model = models.WorkingHours
    extra = 0


class TimeOffInline(admin.TabularInline):
    model = models.TimeOff
    extra = 0


@admin.register(models.Practitioner)
class PractitionerAdmin(admin.ModelAdmin):
    list_display = ["name", "clinic", "is_active"]
    list_filter = ["clinic", "is_active"]
    search_fields = ["name"]
    filter_horizontal = ["procedures"]
    inlines = [WorkingHoursInline, TimeOffInline]


class ProcedureRecordInline(admin.TabularInline):
    model = models.ProcedureRecord
    fk_name = "patient"
    extra = 0
    fields = ["procedure", "performed_at", "area", "source", "notes"]


class MedicationCourseInline(admin.TabularInline):
    model = models.MedicationCourse
    extra = 0
    fields = ["drug", "started_on", "ended_on", "notes"]


class PatientConditionInline(admin.TabularInline):
    model = models.PatientCondition
    extra = 0


@admin.register(models.Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["last_name", "first_name", "clinic", "date_of_birth", "email", "phone"]
    list_filter = ["clinic"]
    search_fields = ["last_name", "first_name", "email", "phone"]
    inlines = [PatientConditionInline, MedicationCourseInline, ProcedureRecordInline]


class AuditEventInline(admin.TabularInline):
    model = models.AuditEvent
    extra = 0
    can_delete = False
    readonly_fields = ["action", "at", "actor_label", "actor_user", "reason", "details"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(models.Appointment)
class AppointmentAdmin(admin.ModelAdmin):
    list_display = ["start_at", "procedure", "patient", "practitioner", "clinic", "status"]
    list_filter = ["clinic", "status", "procedure"]
    search_fields = ["patient__last_name", "patient__first_name"]
    date_hierarchy = "start_at"
    readonly_fields = [f.name for f in models.Appointment._meta.fields]
    inlines = [AuditEventInline]

    def has_add_permission(self, request):
        return False  # bookings go through the rule checks of the front desk or the API


@admin.register(models.AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "action", "appointment", "actor_label"]
    list_filter = ["action"]
    readonly_fields = ["appointment", "action", "at", "actor_user", "actor_label", "reason", "details"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
