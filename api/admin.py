"""Admin for API clients: create, revoke and rotate keys. A new key is shown once, never stored in clear."""

from django.contrib import admin, messages
from django.utils import timezone

from clinic.models import ApiClient


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ["name", "key_prefix", "clinical", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["clinical", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_prefix"]
    filter_horizontal = ["clinics", "organisations"]
    readonly_fields = ["key_prefix", "created_at", "last_used_at"]
    # An organisation granted: every clinic of it, now and later (as `create_api_client --organisation`).
    fields = ["name", "clinics", "organisations", "clinical", "key_prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke", "rotate"]

    def save_model(self, request, obj, form, change):
        key = None if change else obj.set_new_key()
        super().save_model(request, obj, form, change)
        if key:
            self._show_key(request, obj, key)

    def _show_key(self, request, client: ApiClient, key: str) -> None:
        messages.warning(request, f"Key for {client.name} (shown once, copy it now): {key}")

    @admin.action(description="Revoke the selected clients' keys (their calls get 401 at once)")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} client(s).")

    @admin.action(description="Rotate the selected clients' keys (the old key stops working at once)")
    def rotate(self, request, queryset):
        for client in queryset:
            key = client.set_new_key()
            client.save(update_fields=["key_prefix", "key_hash"])
            self._show_key(request, client, key)
