"""URL configuration: the admin, the public API and the front desk."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("", include("frontdesk.urls")),
]
