"""Admin for the clinical rules: clinicians and administrators edit them here."""
from django.contrib import admin

from scheduler.models import ContraindicationRule, IntervalRule


@admin.register(IntervalRule)
class IntervalRuleAdmin(admin.ModelAdmin):
    list_display = ["__str__", "severity", "scope", "source", "is_active"]
    list_filter = ["later_procedure", "severity", "is_active"]
    search_fields = ["source", "note"]


@admin.register(ContraindicationRule)
class ContraindicationRuleAdmin(admin.ModelAdmin):
    list_display = ["__str__", "procedure", "severity", "applies_to", "area_specific", "is_active"]
    list_filter = ["procedure", "severity", "is_active"]
    search_fields = ["condition__name", "medication__name", "source"]
