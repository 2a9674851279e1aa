"""What every registry admin page shares: the service-backed ModelAdmin that reports a
refused service call as a message, read-only inlines, the 303 after a POST, and the
display helpers that keep lists one line wide at 1280 px."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html


class SeeOther(HttpResponseRedirect):
    """303: after a POST that changed something, the browser GETs the next page, so a
    reload or the back button repeats nothing."""

    status_code = 303


class ServiceBackedAdmin(admin.ModelAdmin):
    """A refused service call in a standard admin form becomes a message, not a 500."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


SHORT_ID_CHARS = 8


def _short_with_copy(value: str, chars: int = SHORT_ID_CHARS):
    """The first characters of a long id, the whole id in its title, and a copy button
    (registry/admin/copy.js): lists stay one line wide at 1280 px."""
    return format_html('<span class="short-id"><code title="{}">{}</code>'
                       '<button type="button" class="copy-id" data-copy-value="{}" title="Copy {}">'
                       'Copy</button></span>', value, value[:chars] + ("…" if len(value) > chars else ""), value,
                       value)


def _breakable_time(value):
    """A time in the admin's format, allowed to break between its date and its time."""
    if value is None:
        return "—"
    text = date_format(timezone.localtime(value), "DATETIME_FORMAT")
    day, _, rest = text.partition(" ")
    return format_html('<span class="nowrap">{}</span> <span class="nowrap">{}</span>', day, rest)
