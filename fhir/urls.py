"""FHIR routes, mounted at /fhir/ (config/urls.py): R4 under /fhir/r4/ (docs/fhir.md). Anything else under
/fhir/, beside the base (/fhir/metadata, /fhir/R4/...) or under it, is an OperationOutcome 404."""

from django.urls import include, path, re_path

from fhir import views

app_name = "fhir"

# POST [type]/_search: the same search as GET [type] (R4), its parameters in a form body; the one POST served.
_SEARCH_BY_POST = {"http_method_names": ["post"]}

r4 = [
    path("metadata", views.MetadataView.as_view(), name="metadata"),
    path("Schedule", views.ScheduleSearchView.as_view(), name="schedule-search"),
    path("Schedule/_search", views.ScheduleSearchView.as_view(**_SEARCH_BY_POST), name="schedule-search-post"),
    path("Schedule/<str:resource_id>", views.ScheduleReadView.as_view(), name="schedule-read"),
    path("Slot", views.SlotSearchView.as_view(), name="slot-search"),
    path("Slot/_search", views.SlotSearchView.as_view(**_SEARCH_BY_POST), name="slot-search-post"),
    path("Appointment", views.AppointmentSearchView.as_view(), name="appointment-search"),
    path("Appointment/_search", views.AppointmentSearchView.as_view(**_SEARCH_BY_POST), name="appointment-search-post"),
    path("Appointment/<str:resource_id>", views.AppointmentReadView.as_view(), name="appointment-read"),
    re_path(r"^.*$", views.UnknownView.as_view()),
]

urlpatterns = [
    path("r4/", include(r4)),
    re_path(r"^.*$", views.UnknownView.as_view()),
]
