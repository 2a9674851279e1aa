"""Moved to ``registry.admin.forms``; this path stays importable."""

from registry.admin.forms import *  # noqa: F403
