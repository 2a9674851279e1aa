"""Shared plumbing of the registry's management commands: the same services as the
admin, refusals on stderr with a non-zero exit, nothing written on error."""

import json
import uuid

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from registry.models import Participant


class RegistryCommand(BaseCommand):
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
