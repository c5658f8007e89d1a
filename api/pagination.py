"""Page-number pagination: `{count, next, previous, results}`; a bad page is a 400, not a 404.

`page` and `page_size` are whole numbers, given at most once: page from 1,
page_size from 1 to 200. A larger page_size is refused rather than quietly
cut to 200, and the schema says so. A page past the last one is refused with
its own code (`page_out_of_range`): the request is well formed, the page
just does not exist (yet).
"""

from rest_framework import pagination
from rest_framework.exceptions import ValidationError

from api.filters import refuse_repeated_and_empty
from api.problems import FieldProblem

PAGE_SIZE_MESSAGE = "A positive whole number, at most 200."


def _whole(raw: str) -> int | None:
    """A whole number written in digits, or None; any number too long to be a page reads as a huge one
    (int() would refuse more than 4300 digits with an error of its own)."""
    if not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw) if len(raw) <= 18 else 10**18


class Pagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    last_page_strings = ()  # no `?page=last`: a page is a number, as the schema says

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None:
            size = _whole(raw)
            if size is None or not 1 <= size <= self.max_page_size:
                raise ValidationError({"page_size": [PAGE_SIZE_MESSAGE]})
        return super().get_page_size(request)

    def check_query(self, request) -> None:
        """A 400 for a page or page size that is not one: also asked before a write whose answer is a page (the
        intake's PUT), so a bad query refuses the request instead of answering 400 after the write."""
        refuse_repeated_and_empty(request.query_params, (self.page_query_param, self.page_size_query_param))
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and ((_whole(raw) or 0) < 1):
            raise ValidationError({"page": ["A positive whole number."]})
        self.get_page_size(request)

    def paginate_queryset(self, queryset, request, view=None):
        self.check_query(request)
        try:
            return super().paginate_queryset(queryset, request, view)
        except pagination.NotFound:
            raise FieldProblem("page_out_of_range", "page", "That page is past the last one.")

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Page number, from 1.",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page, 1 to {self.max_page_size} (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
