"""Shared plumbing of the registry's management commands: the same services as the
admin, refusals on stderr with a non-zero exit, nothing written on error.

A command that changes something names its ``permission`` (the one the admin's page for
it needs) and takes ``--actor USERNAME``: an active staff user holding that permission,
recorded in the audit log. Without it the operating-system user is recorded
("os:alice"), never a bare "system".
"""

import getpass
import json
import os
import uuid

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from registry.audit import ProcessActor
from registry.models import Participant


def os_user_actor() -> ProcessActor:
    """The operating-system user running this process, as an audit actor."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        name = f"uid{os.getuid()}"
    return ProcessActor(f"os:{name}")


class RegistryCommand(BaseCommand):
    # The permission (codename in the registry app) --actor must hold; "" for none.
    permission = ""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        if self.permission:
            parser.add_argument(
                "--actor", metavar="USERNAME",
                help=f"the person acting: an active staff user with registry.{self.permission} "
                     f"(default: the operating-system user, recorded as os:NAME)")
        return parser

    def acting_user(self, options: dict):
        """The user ``--actor`` names, checked, or the operating-system user."""
        username = options.get("actor")
        if username is None:
            return os_user_actor()
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"--actor {username}: no such user.")
        if not user.is_active:
            raise CommandError(f"--actor {username}: the account is inactive.")
        if not user.is_staff:
            raise CommandError(f"--actor {username}: not a staff user.")
        if not user.has_perm(f"registry.{self.permission}"):
            raise CommandError(f"--actor {username}: lacks the permission registry.{self.permission} "
                               f"this command needs.")
        return user

    def participant(self, participant_id: str) -> Participant:
        try:
            parsed = uuid.UUID(participant_id)
        except ValueError as exc:
            raise CommandError(f"{participant_id!r} is not a participant id (a UUID).") from exc
        participant = Participant.objects.select_related("organisation", "client").filter(
            participant_id=parsed).first()
        if participant is None:
            raise CommandError(f"No participant has id {participant_id}.")
        return participant

    def run_service(self, call):
        try:
            return call()
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc

    def emit_json(self, payload) -> None:
        self.stdout.write(json.dumps(payload, sort_keys=True))
