"""URL configuration: the admin, the public API and the front desk."""
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
