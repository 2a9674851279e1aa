"""Former name of ``ocen_sdk.wire`` (the wire contract, not an HTTP client): old imports keep working."""

from ocen_sdk.wire import *  # noqa: F403
