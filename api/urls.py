"""Public API v1 routes (see docs/api.md); anything else under /api/v1/ is a JSON 404."""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import path, re_path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

from api import merge, plans, problems, views, webhooks
from api.published import PublishedSchemaApi

app_name = "api"

urlpatterns = [
    path("organisations/", views.OrganisationListApi.as_view(), name="organisation-list"),
    path("clinics/", views.ClinicListApi.as_view(), name="clinic-list"),
    path("procedures/", views.ProcedureListApi.as_view(), name="procedure-list"),
    path("practitioners/", views.PractitionerListApi.as_view(), name="practitioner-list"),
    path("patients/", views.PatientListCreateApi.as_view(), name="patient-list"),
    path("patients/<str:patient_id>/", views.PatientDetailApi.as_view(), name="patient-detail"),
    path("patients/<str:patient_id>/merge/", merge.PatientMergeApi.as_view(), name="patient-merge"),
    path("patients/<str:patient_id>/procedures/", views.PatientProcedureListApi.as_view(), name="patient-procedures"),
    path(
        "patients/<str:patient_id>/medications/", views.PatientMedicationListApi.as_view(), name="patient-medications"
    ),
    path(
        "patients/<str:patient_id>/medications/<str:course_id>/",
        views.PatientMedicationDetailApi.as_view(),
        name="patient-medication-detail",
    ),
    path("patients/<str:patient_id>/conditions/", views.PatientConditionsApi.as_view(), name="patient-conditions"),
    path("eligibility/", views.EligibilityApi.as_view(), name="eligibility"),
    path("availability/", views.AvailabilityApi.as_view(), name="availability"),
    path("appointments/", views.AppointmentListCreateApi.as_view(), name="appointment-list"),
    path("appointments/<str:appointment_id>/", views.AppointmentDetailApi.as_view(), name="appointment-detail"),
    path(
        "appointments/<str:appointment_id>/reschedule/",
        views.AppointmentRescheduleApi.as_view(),
        name="appointment-reschedule",
    ),
    path(
        "appointments/<str:appointment_id>/reschedule-check/",
        views.AppointmentRescheduleCheckApi.as_view(),
        name="appointment-reschedule-check",
    ),
    path("appointments/<str:appointment_id>/cancel/", views.AppointmentCancelApi.as_view(), name="appointment-cancel"),
    path(
        "appointments/<str:appointment_id>/complete/",
        views.AppointmentCompleteApi.as_view(),
        name="appointment-complete",
    ),
    path("appointments/<str:appointment_id>/clear/", views.AppointmentClearApi.as_view(), name="appointment-clear"),
    path(
        "appointments/<str:appointment_id>/no-show/", views.AppointmentNoShowApi.as_view(), name="appointment-no-show"
    ),
    path("plan-templates/", plans.PlanTemplateListApi.as_view(), name="plan-template-list"),
    path("patients/<str:patient_id>/plans/", plans.PatientPlansApi.as_view(), name="patient-plans"),
    path("plans/<str:plan_id>/", plans.PlanDetailApi.as_view(), name="plan-detail"),
    path("plans/<str:plan_id>/replan/", plans.PlanReplanApi.as_view(), name="plan-replan"),
    path("plans/<str:plan_id>/cancel/", plans.PlanCancelApi.as_view(), name="plan-cancel"),
    path("webhooks/", webhooks.WebhookListCreateApi.as_view(), name="webhook-list"),
    path("webhooks/<str:webhook_id>/", webhooks.WebhookDetailApi.as_view(), name="webhook-detail"),
    path(
        "webhooks/<str:webhook_id>/rotate-secret/",
        webhooks.WebhookSecretRotationApi.as_view(),
        name="webhook-rotate-secret",
    ),
    path("webhooks/<str:webhook_id>/deliveries/", webhooks.WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
    path(
        "webhooks/<str:webhook_id>/deliveries/<str:delivery_id>/redeliver/",
        webhooks.WebhookRedeliveryApi.as_view(),
        name="webhook-redeliver",
    ),
    path("schema/", PublishedSchemaApi.as_view(), name="schema"),
    # The Content-Security-Policy (config/settings.py) allows no inline script or style. Swagger UI's split
    # view serves its set-up as a script file, but the page and the UI style themselves inline; ReDoc also
    # sets itself up inline. These two pages (public, no data) alone relax what each needs.
    path(
        "docs/",
        csp_update({"style-src": [UNSAFE_INLINE]})(SpectacularSwaggerSplitView.as_view(url_name="api:schema")),
        name="docs",
    ),
    path(
        "redoc/",
        csp_update({"script-src": [UNSAFE_INLINE], "style-src": [UNSAFE_INLINE], "worker-src": ["blob:"]})(
            SpectacularRedocView.as_view(url_name="api:schema")
        ),
        name="redoc",
    ),
    # Last: unknown paths answer a problem document, even with DEBUG on.
    re_path(r"^.*$", problems.unknown_api_path),
]
