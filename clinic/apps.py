from django.apps import AppConfig


class ClinicConfig(AppConfig):
    name = "clinic"
    verbose_name = "Clinic"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        import clinic.checks  # noqa: F401 (registers the database checks: `check --database default`)
        import core.checks  # noqa: F401
        from core.db import install_fast_timestamptz_loader, keep_long_statements_parsed
        from core.text_match import install_sqlite_unicode_lower

        connection_created.connect(install_fast_timestamptz_loader, dispatch_uid="core.db.timestamptz")
        connection_created.connect(install_sqlite_unicode_lower, dispatch_uid="core.text_match.unicode_lower")
        keep_long_statements_parsed()
