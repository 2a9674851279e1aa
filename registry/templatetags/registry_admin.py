"""Template helpers of the registry admin's own pages."""

from datetime import timedelta

from django import template

from registry.admin_site import admin_title

register = template.Library()


@register.simple_tag
def registry_admin_title() -> str:
    """The admin's title, for pages the admin site does not render (the lockout page)."""
    return admin_title()


@register.filter
def age(delta: timedelta) -> str:
    """A waiting time an operator reads at a glance: "3 d 4 h", "5 h 10 min", "2 min"."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
