"""The audit log's list filters."""

from datetime import datetime, time, timedelta

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils import timezone
from django.utils.dateparse import parse_date


class OccurredBetweenFilter(admin.ListFilter):
    """Audit events from one day to another, inclusive (UTC dates, ``YYYY-MM-DD``)."""

    title = "date (UTC)"
    template = "registry/admin/date_range_filter.html"
    FROM, TO = "occurred_from", "occurred_to"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.values = {}
        for name in (self.FROM, self.TO):
            if name in params:
                value = params.pop(name)
                self.values[name] = (value[-1] if isinstance(value, list) else value).strip()
        self.bounds = {name: self._parse(value) for name, value in self.values.items() if value}

    @staticmethod
    def _parse(value: str) -> datetime:
        try:
            day = parse_date(value) if len(value) == 10 else None
        except ValueError:  # well formed, but no such day
            day = None
        if day is None:
            raise IncorrectLookupParameters(f"{value!r} is not a date (YYYY-MM-DD).")
        return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.FROM, self.TO]

    def queryset(self, request, queryset):
        if self.FROM in self.bounds:
            queryset = queryset.filter(occurred_at__gte=self.bounds[self.FROM])
        if self.TO in self.bounds:
            queryset = queryset.filter(occurred_at__lt=self.bounds[self.TO] + timedelta(days=1))
        return queryset

    def choices(self, changelist):
        keep = [(name, value) for name, value in changelist.get_filters_params().items()
                if name not in (self.FROM, self.TO)]
        yield {
            "from": self.values.get(self.FROM, ""),
            "to": self.values.get(self.TO, ""),
            "hidden": [(name, item) for name, values in keep
                       for item in (values if isinstance(values, list) else [values])],
            "search": changelist.query,
            "clear_url": changelist.get_query_string(remove=[self.FROM, self.TO]),
            "active": bool(self.bounds),
        }
