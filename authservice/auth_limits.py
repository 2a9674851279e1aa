"""Moved to ``authservice.lockouts`` (failed client authentications counted and locked
out); the old name stays importable and is the same module object, so attributes set or
patched through either name are shared."""

import sys

from authservice import lockouts

sys.modules[__name__] = lockouts
