"""The service, slow to load while a marker file exists (AUTHSERVICE_TEST_SLOW_MARKER):
a worker that starts then takes seconds to listen, as on a loaded or throttled host."""

import os
import time

from authservice.wsgi import application

marker = os.environ.get("AUTHSERVICE_TEST_SLOW_MARKER")
if marker and os.path.exists(marker):
    time.sleep(float(os.environ.get("AUTHSERVICE_TEST_SLOW_SECONDS", "6")))

__all__ = ["application"]
