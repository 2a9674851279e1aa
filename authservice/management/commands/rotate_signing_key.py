"""The old import path of the `rotate_signing_key` command, which is the signing app's now
(``signing.management.commands.rotate_signing_key``; `manage.py rotate_signing_key` runs that one)."""

from signing.management.commands.rotate_signing_key import *  # noqa: F403
from signing.management.commands.rotate_signing_key import Command, _dumps  # noqa: F401
