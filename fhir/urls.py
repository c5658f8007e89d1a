"""FHIR R4 routes under /fhir/r4/ (docs/fhir.md); anything else there is an OperationOutcome 404."""

from django.urls import path, re_path

from fhir import views

app_name = "fhir"

urlpatterns = [
    path("metadata", views.MetadataView.as_view(), name="metadata"),
    path("Schedule", views.ScheduleSearchView.as_view(), name="schedule-search"),
    path("Schedule/<str:resource_id>", views.ScheduleReadView.as_view(), name="schedule-read"),
    path("Slot", views.SlotSearchView.as_view(), name="slot-search"),
    path("Appointment", views.AppointmentSearchView.as_view(), name="appointment-search"),
    path("Appointment/<str:resource_id>", views.AppointmentReadView.as_view(), name="appointment-read"),
    re_path(r"^.*$", views.UnknownView.as_view()),
]
