"""Moved to ``registry.admin.groups``; this path stays importable."""

from registry.admin.groups import *  # noqa: F403
