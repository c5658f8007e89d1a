"""URL configuration: the admin, the public API (v1 and its FHIR R4 read view), the front desk and the
patients' own pages."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("fhir/", include("fhir.urls")),  # read-only FHIR R4 view at /fhir/r4/ (docs/fhir.md)
    path("reminders/", include("reminders.urls")),  # unsubscribe links, inbound SMS
    path("my/", include("portal.urls")),  # the patient's own appointment page (reminders.links.MANAGE_PATH)
    path("", include("frontdesk.urls")),
]

if settings.BENCH_ENDPOINTS:  # the benchmarks' bare-insert baseline (bench/baseline.py); off unless BENCH_ENDPOINTS=1
    urlpatterns.insert(0, path("bench/", include("bench.urls")))

# Under /fhir/ errors are OperationOutcomes (fhir/handlers.py), under /api/ problem details (api/problems.py);
# elsewhere Django's own pages. config/errors.py chooses by the path.
handler400 = "config.errors.bad_request"
handler403 = "config.errors.permission_denied"
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
