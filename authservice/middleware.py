"""Moved to ``authservice.oauth_fast_path`` (the OAuth endpoints' short path through the
middleware stack); the old name stays importable and is the same module object, so
attributes set or patched through either name are shared."""

import sys

from authservice import oauth_fast_path

sys.modules[__name__] = oauth_fast_path
