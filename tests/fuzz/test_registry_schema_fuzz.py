"""schemathesis against a live server, from the service's own OpenAPI schema (the
registry API with a valid bearer token, the OAuth endpoints with valid client
credentials): zero 5xx and zero schema violations. Bounded so CI stays fast (a few
dozen generated requests per operation).

At the OAuth endpoints a schema-valid request can still be refused for what the
schema cannot say (a scope not granted, a token of another client), and on the list
a page number past the end is a documented 404, so the "positive data accepted"
check is left out there; every other check stays."""

import base64

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from registry import services
from tests.keymaterial import ec_key

pytestmark = pytest.mark.django_db(transaction=True)
EXAMPLES = 40


@pytest.fixture
def registry_token(live_server, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": live_server.url}
    from authservice.signing_keys import signing_key_ensure

    signing_key_ensure()
    credentials = services.participant_onboard(org_name="Schema Bank", role="LENDER",
                                               base_url="https://schema.example", public_key=ec_key().public_pem(),
                                               acting_user=None)
    services.participant_onboard(org_name="Other Bank", role="LOAN_AGENT", base_url="https://other.example",
                                 public_key=ec_key().public_pem(), acting_user=None)
    response = httpx.post(f"{live_server.url}/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=(credentials.client_id, credentials.client_secret))
    basic = base64.b64encode(f"{credentials.client_id}:{credentials.client_secret}".encode()).decode()
    return response.json()["access_token"], f"Basic {basic}"


def test_registry_api_has_no_5xx_and_no_schema_violation(live_server, registry_token):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/registry/v1/schema")
    token, client_basic = registry_token
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9  # the registry's four, the OAuth endpoints, JWKS, discovery

    for operation in operations:
        oauth = operation.path.startswith(("/oauth2/", "/.well-known/"))
        lenient = oauth or operation.path == "/registry/v1/participants"
        check = _checker(operation, live_server.url, {"Authorization": client_basic if oauth else f"Bearer {token}"},
                         [positive_data_acceptance] if lenient else [])
        try:
            check()
        except Exception as exc:  # collect every operation's first failure, then fail once
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def _checker(operation, base_url: str, headers: dict, excluded: list):
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call(base_url=base_url, headers=headers)
        assert response.status_code < 500, (case.path, case.path_parameters, case.query, response.text[:200])
        case.validate_response(response, headers=headers, excluded_checks=excluded)

    return check
