"""The old import path of the `reencrypt_keys` command, which is the signing app's now
(``signing.management.commands.reencrypt_keys``; `manage.py reencrypt_keys` runs that one)."""

from signing.management.commands.reencrypt_keys import *  # noqa: F403
from signing.management.commands.reencrypt_keys import Command, _dumps  # noqa: F401
