from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """The default for every list: pages of 50 (settings PAGE_SIZE), ``?page_size=`` up to 500."""

    page_size_query_param = "page_size"
    max_page_size = 500
