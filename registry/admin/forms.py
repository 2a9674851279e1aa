"""Forms of the registry admin's workflow pages. They collect input; the services
validate and act, and their ValidationErrors come back here as form errors."""

import json

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect

from authservice.clients import MAX_SECRET_GRACE_SECONDS
from registry.four_eyes import approval_content, content_digest
from registry.key_material import PRIVATE_JWK_MEMBERS
from registry.models import HOLDING_STATUSES, Organisation, Participant, ResourceMapping, Role, Scope, Status

KEY_HELP = "A PEM X.509 certificate, a PEM public key, or a JWK (JSON). Never a private key."


class OnboardForm(forms.Form):
    organisation = forms.ModelChoiceField(queryset=Organisation.objects.all(), required=False,
                                          help_text="An existing organisation, or fill in a new one below.")
    new_organisation_name = forms.CharField(required=False, max_length=200, label="New organisation: legal name")
    website = forms.URLField(required=False, label="New organisation: website", assume_scheme="https")
    contact_email = forms.EmailField(required=False, label="New organisation: contact email")
    role = forms.ChoiceField(choices=Role.choices)
    base_url = forms.CharField(label="API base URL", max_length=500, help_text="https://…")
    public_key = forms.CharField(widget=forms.Textarea(attrs={"rows": 8, "cols": 80}), help_text=KEY_HELP)
    kid = forms.CharField(required=False, max_length=128, help_text="Optional; defaults to the RFC 7638 thumbprint.")


class ConfirmForm(forms.Form):
    """Nothing to enter: the page itself is the confirmation."""

class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=2000)


class RotateSecretForm(forms.Form):
    grace_seconds = forms.IntegerField(
        min_value=0, max_value=MAX_SECRET_GRACE_SECONDS, initial=0, label="Grace period (seconds)",
        help_text="0: the old secret stops working at once. Otherwise it keeps working this long.",
    )
    revoke_tokens = forms.BooleanField(
        required=False, label="Also end every token issued with the old secret",
        help_text="For a leaked secret: every token issued before now is refused. Needs a grace period of 0.",
    )
    force = forms.BooleanField(
        required=False, label="Force",
        help_text="Rotate even if the secret was rotated within the last minute, or the previous secret's "
                  "grace period is still running (it then stops at once).",
    )


class AddKeyForm(forms.Form):
    public_key = forms.CharField(widget=forms.Textarea(attrs={"rows": 8, "cols": 80}), help_text=KEY_HELP)
    kid = forms.CharField(required=False, max_length=128, help_text="Optional; defaults to the RFC 7638 thumbprint.")


class AddEndpointForm(forms.Form):
    url = forms.CharField(label="API base URL", max_length=500)


class CatalogueScopesField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, scope: Scope) -> str:
        return f"{scope.name} — {scope.description}" if scope.description else scope.name


class GrantMappingForm(forms.Form):
    AS_CLIENT, AS_PROVIDER, AT_REGISTRY = "client", "provider", "registry"
    direction = forms.ChoiceField(choices=[(AS_CLIENT, "This participant calls the other one (client)"),
                                           (AS_PROVIDER, "The other one calls this participant (provider)"),
                                           (AT_REGISTRY, "This participant reads the registry itself "
                                                         "(registry scopes only)")])
    # Searched as you type (the participant list's search), not a list of every participant.
    other = forms.ModelChoiceField(
        queryset=Participant.objects.none(), required=False, label="Other participant",
        widget=AutocompleteSelect(ResourceMapping._meta.get_field("provider"), admin.site),
        help_text="Type a name, client id or participant id. Required, except for a grant at the registry.")
    scopes = CatalogueScopesField(queryset=Scope.objects.all(), to_field_name="name",
                                  widget=forms.CheckboxSelectMultiple, help_text="From the scope catalogue.")
    replace = forms.BooleanField(required=False, label="Replace",
                                 help_text="Replace the scopes the mapping holds instead of adding to them.")
    confirm_unapproved_provider = forms.BooleanField(
        required=False, label="Grant even though the provider is not approved",
        help_text="Needed when the provider is not approved yet: the grant takes effect once it is.")

    def __init__(self, *args, participant: Participant, **kwargs):
        super().__init__(*args, **kwargs)
        self.participant = participant
        self.fields["other"].queryset = (
            Participant.objects.filter(status__in=HOLDING_STATUSES).exclude(pk=participant.pk)
            .select_related("organisation")
        )

    def clean(self):
        data = super().clean()
        direction, other = data.get("direction"), data.get("other")
        if direction == self.AT_REGISTRY:
            if other:
                raise forms.ValidationError("A grant at the registry names no other participant.")
            return data
        if direction == self.AS_PROVIDER and not other:
            raise forms.ValidationError("Choose the participant that will call this one.")
        if direction == self.AS_CLIENT and not other:
            raise forms.ValidationError("Choose the provider this participant will call.")
        provider = other if direction == self.AS_CLIENT else self.participant
        if provider is not None and provider.status != Status.APPROVED and not data.get("confirm_unapproved_provider"):
            raise forms.ValidationError(
                f"The provider {provider} is {provider.get_status_display().lower()}, not approved: tick "
                "“Grant even though the provider is not approved” to grant anyway.")
        return data


class ConfirmNameForm(forms.Form):
    """Final steps (offboarding): the operator types the organisation's name to confirm."""

    confirm_name = forms.CharField(max_length=200, label="Type the organisation's name to confirm",
                                   help_text="Exactly as shown above; letter case and extra spaces do not matter.")

    def __init__(self, *args, participant: Participant, **kwargs):
        super().__init__(*args, **kwargs)
        self.expected_name = participant.organisation.legal_name
        self.fields["confirm_name"].help_text = f"Type “{self.expected_name}”. " + self.fields[
            "confirm_name"].help_text

    def clean_confirm_name(self):
        typed = " ".join(self.cleaned_data["confirm_name"].split())
        if typed.casefold() != " ".join(self.expected_name.split()).casefold():
            raise forms.ValidationError(f"That is not the organisation's name. Type “{self.expected_name}” "
                                        f"to confirm offboarding.")
        return typed


class OffboardForm(ReasonForm, ConfirmNameForm):
    """Offboarding in one step (four-eyes off): a reason, and the typed name."""

    field_order = ["reason", "confirm_name"]


class BulkOffboardForm(ReasonForm):
    """Offboarding several participants at once: the operator types how many."""

    confirm_count = forms.IntegerField(label="Type the number of participants to confirm", min_value=0)

    def __init__(self, *args, count: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.count = count

    def clean_confirm_count(self):
        typed = self.cleaned_data["confirm_count"]
        if typed != self.count:
            raise forms.ValidationError(f"Type {self.count} (the number of participants selected) to confirm "
                                        f"offboarding them.")
        return typed


class ScopeForm(forms.ModelForm):
    provider_roles = forms.MultipleChoiceField(
        choices=Role.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Roles of the providers that offer this scope; none ticked: any.")

    class Meta:
        model = Scope
        fields = ["name", "description", "provider_roles"]


class ApproveForm(ConfirmForm):
    """The approve page: carries the digest of what the operator was shown, so an
    application changed since is refused rather than approved unseen."""

    digest = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, participant: Participant, **kwargs):
        super().__init__(*args, **kwargs)
        self.approval = approval_content(participant)
        self.approval_digest = content_digest(self.approval)
        self.fields["digest"].initial = self.approval_digest


def _is_private_key_material(text: str) -> bool:
    if "PRIVATE KEY" in text:
        return True
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and bool(PRIVATE_JWK_MEMBERS & set(data))


def _forget_private_key(form) -> None:
    """A refused private key is never echoed back into the page (nor its history)."""
    if form.is_bound and "public_key" in form.fields and _is_private_key_material(form.data.get("public_key", "")):
        form.data = form.data.copy()
        form.data["public_key"] = ""
