"""The published OpenAPI schema is valid and describes what the API really returns."""

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from registry import services


@pytest.fixture
def schema(client, db):
    response = client.get("/registry/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_schema_is_valid_openapi(schema):
    validate(schema)
    assert set(schema["paths"]) == {
        "/registry/v1/participants",
        "/registry/v1/participants/{participant_id}",
        "/registry/v1/participants/{participant_id}/jwks",
        "/service/participant-roles/{participant_id}",
        "/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/oauth2/jwks", "/.well-known/openid-configuration",
    }
    flows = schema["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/oauth2/token"  # Swagger UI's Authorize fetches a token
    detail = schema["paths"]["/registry/v1/participants/{participant_id}"]["get"]
    (parameter,) = [p for p in detail["parameters"] if p["name"] == "participant_id"]
    assert parameter["schema"]["format"] == "uuid"
    assert {"200", "304", "400", "401", "403", "404"} <= set(detail["responses"])
    token = schema["paths"]["/oauth2/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert {"200", "400", "401", "503"} <= set(token["responses"])


def _validator(schema, path):
    response_schema = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    return OAS30Validator({**response_schema, "components": schema["components"]})


def test_responses_match_the_schema(schema, client, onboard, token_for, admin_user):
    (reader, _), (lender, _) = onboard("LOAN_AGENT"), onboard("LENDER")
    services.public_key_add(participant=lender.participant,
                            key_material=__import__("tests.keymaterial", fromlist=["rsa_key"]).rsa_key().certificate(),
                            acting_user=admin_user)
    token = token_for(reader.participant.client, reader.client_secret).json()["access_token"]
    pid = lender.participant.participant_id
    cases = {
        "/registry/v1/participants": "/registry/v1/participants",
        "/registry/v1/participants/{participant_id}": f"/registry/v1/participants/{pid}",
        "/registry/v1/participants/{participant_id}/jwks": f"/registry/v1/participants/{pid}/jwks",
        "/service/participant-roles/{participant_id}": f"/service/participant-roles/{pid}",
    }
    for template, path in cases.items():
        body = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}").json()
        _validator(schema, template).validate(body)
    services.participant_suspend(participant=lender.participant, reason="check", acting_user=admin_user)
    for template, path in cases.items():  # a tokens-not-before, and no keys
        body = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}").json()
        _validator(schema, template).validate(body)


def test_docs_are_served_from_local_static_files(client, db):
    for path in ("/registry/v1/docs", "/registry/v1/redoc"):
        html = client.get(path).content.decode()
        assert "cdn" not in html.lower() and "jsdelivr" not in html
        # Swagger UI from the sidecar's static files; ReDoc's bundle through registry/api/docs.py
        assert "/static/drf_spectacular_sidecar/" in html or "/registry/v1/redoc.standalone.js" in html
