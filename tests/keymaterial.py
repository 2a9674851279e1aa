"""Real key material for tests: generated keys, certificates (valid, expired, not yet
valid), and the private halves a participant's systems would hold."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwcrypto import jwk


@dataclass(frozen=True)
class KeyPair:
    private_key: object

    @property
    def public_key(self):
        return self.private_key.public_key()

    def public_pem(self) -> str:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def private_pem(self) -> str:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()

    def public_jwk(self, **extra) -> str:
        return json.dumps({**jwk.JWK.from_pyca(self.public_key).export_public(as_dict=True), **extra})

    def private_jwk(self) -> str:
        return jwk.JWK.from_pyca(self.private_key).export_private()

    def thumbprint(self) -> str:
        return jwk.JWK.from_pyca(self.public_key).thumbprint()

    def certificate(self, *, not_before: datetime | None = None, not_after: datetime | None = None,
                    cn: str = "participant.example") -> str:
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        algorithm = None if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=365))
            .sign(self.private_key, algorithm)
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()


def rsa_key(bits: int = 2048) -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def ec_key(curve=None) -> KeyPair:
    return KeyPair(ec.generate_private_key(curve or ec.SECP256R1()))


def ed25519_key() -> KeyPair:
    return KeyPair(ed25519.Ed25519PrivateKey.generate())


@lru_cache(maxsize=1)
def rsa_1024() -> KeyPair:
    return rsa_key(1024)
