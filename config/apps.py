"""django.contrib.admin with this project's admin site (config/admin.py) as the default `admin.site`."""

from django.contrib.admin.apps import AdminConfig


class ClinicAdminConfig(AdminConfig):
    default_site = "config.admin.ClinicAdminSite"
