"""The token verifier on its own: algorithms, keys, claims (no server needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from servicekit.auth import Principal, TokenVerifier
from servicekit.errors import AuthenticationFailed
from servicekit.jwks import JwksKeys
from servicekit.settings import SettingsError
from servicekit.tokens import mint

ISSUER, AUDIENCE = "https://issuer.test", "command-api"
SECRET = b"an-hs256-secret-of-at-least-32-bytes!!"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        data["alg"] = "RS256"
    else:
        data = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        data["alg"] = "ES256"
    return {**data, "kid": kid, "use": "sig"}


JWKS = {
    "keys": [
        public_jwk(RSA_KEY, "rsa-1"),
        public_jwk(EC_KEY, "ec-1"),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "x"},
    ]
}


def token(key: Any = SECRET, algorithm: str = "HS256", kid: str | None = None, **claims: Any) -> str:
    return mint(
        subject=claims.pop("subject", "alice"),
        roles=claims.pop("roles", ["customer"]),
        issuer=claims.pop("issuer", ISSUER),
        audience=claims.pop("audience", AUDIENCE),
        key=key,
        algorithm=algorithm,
        kid=kid,
        ttl_seconds=claims.pop("ttl_seconds", 300),
        now=claims.pop("now", None),
        extra_claims=claims or None,
    )


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(JWKS))
    return path


@pytest.fixture
def verifier(jwks_file: Path) -> TokenVerifier:
    return TokenVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["HS256", "RS256", "ES256"],
        leeway_seconds=30,
        secret=SECRET,
        jwks=JwksKeys(file=jwks_file),
    )


async def refused(verifier: TokenVerifier, jwt_token: str) -> str:
    with pytest.raises(AuthenticationFailed) as failure:
        await verifier.verify(jwt_token)
    return failure.value.detail


async def test_an_hs256_token_gives_its_subject_and_roles(verifier: TokenVerifier) -> None:
    principal = await verifier.verify(token(roles=["customer"], scope="staff other"))

    # The scope grants nothing unless the service is configured to read roles from it.
    assert principal == Principal(subject="alice", roles=frozenset({"customer"}))


async def test_a_configured_scope_grants_the_known_roles_it_names() -> None:
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, algorithms=["HS256"], secret=SECRET, scope_grants_roles=True
    )
    principal = await verifier.verify(token(roles=["customer"], scope="staff other"))

    assert principal.roles == frozenset({"customer", "staff"})


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"roles": "staff"}, "not a list of role names"),
        ({"roles": ["staff", 7]}, "not a list of role names"),
        ({"roles": ["customer", "admin"]}, "unknown roles: admin"),
        ({"sub": "al\ud800ice"}, "printable ASCII"),
        ({"sub": "alice\n"}, "printable ASCII"),
        ({"sub": "alice smith"}, "printable ASCII"),
        ({"sub": "x" * 201}, "printable ASCII"),
        ({"sub": "\u202eecila"}, "printable ASCII"),
    ],
)
async def test_claims_are_checked_strictly_before_use(
    verifier: TokenVerifier, claims: dict[str, Any], reason: str
) -> None:
    signed = mint(
        subject="alice",
        roles=["customer"],
        issuer=ISSUER,
        audience=AUDIENCE,
        key=SECRET,
        extra_claims=claims,  # applied last: these replace the well-formed claims
    )
    assert reason in await refused(verifier, signed)


@pytest.mark.parametrize(
    ("key", "algorithm", "kid"), [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")]
)
async def test_rs256_and_es256_tokens_verify_with_the_jwks_key(
    verifier: TokenVerifier, key: Any, algorithm: str, kid: str
) -> None:
    assert (await verifier.verify(token(key, algorithm, kid))).subject == "alice"


async def test_an_asymmetric_token_without_kid_uses_the_only_key_of_its_type(verifier: TokenVerifier) -> None:
    assert (await verifier.verify(token(EC_KEY, "ES256"))).subject == "alice"


async def test_expired_tokens_are_refused_but_a_small_clock_skew_is_tolerated(
    verifier: TokenVerifier,
) -> None:
    assert await refused(verifier, token(now=time.time() - 400, ttl_seconds=300)) == "the token has expired"
    assert (await verifier.verify(token(now=time.time() - 310, ttl_seconds=300))).subject == "alice"


async def test_a_token_not_valid_yet_is_refused(verifier: TokenVerifier) -> None:
    assert "nbf" in await refused(verifier, token(nbf=int(time.time()) + 600))


async def test_wrong_audience_or_issuer_is_refused(verifier: TokenVerifier) -> None:
    assert await refused(verifier, token(audience="another-api")) == "the token is for another audience"
    assert await refused(verifier, token(issuer="https://evil.test")) == "the token is from another issuer"


async def test_a_token_signed_with_another_key_is_refused(verifier: TokenVerifier) -> None:
    assert "signature" in await refused(verifier, token(b"another-secret-of-at-least-32-bytes!!!"))
    assert "signature" in await refused(verifier, token(OTHER_RSA_KEY, "RS256", "rsa-1"))


async def test_a_token_naming_an_unknown_key_is_refused(verifier: TokenVerifier) -> None:
    assert "unknown key" in await refused(verifier, token(OTHER_RSA_KEY, "RS256", "rsa-2"))


async def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    claims = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 60,
        "roles": ["staff"],
    }

    for alg in ("none", "None", "NONE"):
        assert "not accepted" in await refused(verifier, unsigned({"alg": alg, "typ": "JWT"}, claims))


async def test_an_hs256_token_signed_with_the_public_rsa_key_is_refused(verifier: TokenVerifier) -> None:
    # The classic algorithm confusion: use the published public key as an HMAC secret.
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "sub": "mallory",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 60,
        "roles": ["staff"],
    }
    header_and_claims = unsigned({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims).rstrip(".")
    signature = hmac.new(public_pem, header_and_claims.encode(), hashlib.sha256).digest()
    forged = f"{header_and_claims}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    assert "signature" in await refused(verifier, forged)


async def test_only_the_configured_algorithms_are_accepted(jwks_file: Path) -> None:
    rs256_only = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"], jwks=JwksKeys(file=jwks_file)
    )

    assert "not accepted" in await refused(rs256_only, token())
    assert "not accepted" in await refused(rs256_only, token(EC_KEY, "ES256", "ec-1"))


async def test_tokens_missing_a_required_claim_are_refused(verifier: TokenVerifier) -> None:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}

    assert "sub" in await refused(verifier, jwt.encode(claims, SECRET, algorithm="HS256"))
    assert "exp" in await refused(verifier, jwt.encode({"sub": "a", "iss": ISSUER, "aud": AUDIENCE}, SECRET))


async def test_garbage_is_not_a_token(verifier: TokenVerifier) -> None:
    assert "well-formed" in await refused(verifier, "not.a.jwt")


def test_a_short_hs256_secret_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="32 bytes"):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, algorithms=["HS256"], secret=b"short")


def test_asymmetric_algorithms_need_a_jwks() -> None:
    with pytest.raises(SettingsError, match="JWKS"):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    document: dict[str, Any] = {"keys": []}
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        body = json.dumps(self.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, type[_JwksHandler]]]:
    handler = type(
        "Handler", (_JwksHandler,), {"document": {"keys": [public_jwk(RSA_KEY, "rsa-1")]}, "requests": 0}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", handler
    finally:
        server.shutdown()
        server.server_close()


async def test_keys_come_from_a_jwks_url_and_a_rotated_key_is_fetched_when_first_seen(
    jwks_server: tuple[str, type[_JwksHandler]],
) -> None:
    url, handler = jwks_server
    async with httpx.AsyncClient() as client:
        keys = JwksKeys(url=url, client=client, min_refetch_seconds=0)
        verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"], jwks=keys)

        assert (await verifier.verify(token(RSA_KEY, "RS256", "rsa-1"))).subject == "alice"
        assert (await verifier.verify(token(RSA_KEY, "RS256", "rsa-1"))).subject == "alice"
        assert handler.requests == 1

        handler.document = {"keys": [public_jwk(RSA_KEY, "rsa-1"), public_jwk(OTHER_RSA_KEY, "rsa-2")]}
        assert (await verifier.verify(token(OTHER_RSA_KEY, "RS256", "rsa-2"))).subject == "alice"
        assert handler.requests == 2
