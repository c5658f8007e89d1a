"""Public API v1 routes (see ../shared/api-contract.md)."""
urlpatterns: list = []
