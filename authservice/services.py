"""Moved to ``authservice.clients`` (writes to OAuth clients); the old name stays
importable and is the same module object, so attributes set or patched through either
name are shared."""

import sys

from authservice import clients

sys.modules[__name__] = clients
