"""Page-number pagination: `{count, next, previous, results}`; a bad page is a 400, not a 404."""
from rest_framework import pagination
from rest_framework.exceptions import ValidationError


class Pagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and (not (raw.isascii() and raw.isdigit()) or int(raw) < 1):
            raise ValidationError({"page_size": ["A positive whole number, at most 200."]})
        return super().get_page_size(request)

    def paginate_queryset(self, queryset, request, view=None):
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and raw != "last" and (not (raw.isascii() and raw.isdigit()) or int(raw) < 1):
            raise ValidationError({"page": ["A positive whole number."]})
        try:
            return super().paginate_queryset(queryset, request, view)
        except pagination.NotFound:
            raise ValidationError({"page": ["That page is past the last one."]})
