from django.apps import AppConfig


class ClinicConfig(AppConfig):
    name = "clinic"
    verbose_name = "Clinic"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        import core.checks  # noqa: F401 (registers the database checks: `check --database default`)
        from core.db import install_fast_timestamptz_loader, install_sqlite_unicode_lower, keep_long_statements_parsed

        connection_created.connect(install_fast_timestamptz_loader, dispatch_uid="core.db.timestamptz")
        connection_created.connect(install_sqlite_unicode_lower, dispatch_uid="core.db.unicode_lower")
        keep_long_statements_parsed()
