"""Helpers shared by test modules at the top of tests/ and the probes that reuse them: migrating the test database to
given migration targets and reading the migration graph's leaves (tests/test_migrations.py).
"""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _leaves():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()
