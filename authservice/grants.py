"""Moved to ``authservice.hooks`` (the hooks through which the registry says what a client
may be granted and which keys it signs with); the old name stays importable and is the
same module object, so attributes set or patched through either name are shared."""

import sys

from authservice import hooks

sys.modules[__name__] = hooks
