#!/usr/bin/env python3
"""Writes the fuzz key set (fuzz/src/jwks.json) and the seed corpora
(fuzz/corpus/<target>/) from fixed test keys.

Every key is derived from a fixed string, so the key set never changes and
no private key is stored: ES256/ES384 from a fixed scalar, Ed25519 from
fixed bytes, RSA from primes drawn by a seeded generator. The tokens are
minted for the fuzz clock (NOW in fuzz/src/lib.rs) and never expire there.

Run from anywhere: python3 fuzz/seeds/make_corpus.py (needs `cryptography`).
"""

import base64
import hashlib
import json
import os
import random

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

FUZZ = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOW = 1_800_000_000  # keep equal to baton_fuzz::NOW
ISSUER = "https://idp.example"  # keep equal to baton_fuzz::ISSUER
BANK = "https://bank.example"  # the in-task-auth-code secondary issuer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seed_int(label: str) -> int:
    return int.from_bytes(hashlib.sha256(label.encode()).digest(), "big")


def ec_key(curve, label: str):
    order = {"secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
             "secp384r1": int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
                              "581a0db248b0a77aecec196accc52973", 16)}[curve.name]
    return ec.derive_private_key(seed_int(label) % (order - 1) + 1, curve)


def is_probable_prime(n: int, rng: random.Random) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(32):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def rsa_key(label: str, bits: int = 2048):
    rng = random.Random(label)
    e = 65537

    def prime() -> int:
        while True:
            candidate = rng.getrandbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if (candidate - 1) % e and is_probable_prime(candidate, rng):
                return candidate

    p, q = prime(), prime()
    n, phi = p * q, (p - 1) * (q - 1)
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                    rsa.RSAPublicNumbers(e, n))
    return numbers.private_key()


def int_bytes(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


ES256 = ec_key(ec.SECP256R1(), "baton-fuzz es256")
ES384 = ec_key(ec.SECP384R1(), "baton-fuzz es384")
ED = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"baton-fuzz ed25519").digest())
RSA = rsa_key("baton-fuzz rsa 2048")


def jwks() -> dict:
    p256 = ES256.public_key().public_numbers()
    p384 = ES384.public_key().public_numbers()
    rsa_pub = RSA.public_key().public_numbers()
    ed_raw = ED.public_key().public_bytes_raw()
    return {"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "x": b64(int_bytes(p256.x, 32)), "y": b64(int_bytes(p256.y, 32))},
        {"kty": "EC", "crv": "P-384", "kid": "ec384-1", "x": b64(int_bytes(p384.x, 48)),
         "y": b64(int_bytes(p384.y, 48))},
        {"kty": "RSA", "kid": "rsa-1", "n": b64(int_bytes(rsa_pub.n, 256)), "e": b64(int_bytes(rsa_pub.e, 3))},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64(ed_raw)},
    ]}


def sign(alg: str, signing_input: bytes) -> bytes:
    if alg in ("ES256", "ES384"):
        key, size, digest = (ES256, 32, hashes.SHA256()) if alg == "ES256" else (ES384, 48, hashes.SHA384())
        der = key.sign(signing_input, ec.ECDSA(digest, deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return int_bytes(r, size) + int_bytes(s, size)
    if alg == "RS256":
        return RSA.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        return RSA.sign(signing_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                        hashes.SHA256())
    if alg == "EdDSA":
        return ED.sign(signing_input)
    raise ValueError(alg)


def compact(header: dict, claims: dict, alg_for_signature: str | None = None) -> str:
    signing_input = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = sign(alg_for_signature, signing_input.encode()) if alg_for_signature else b"\x01\x02"
    return signing_input + "." + b64(signature)


def claims(**extra) -> dict:
    base = {"iss": ISSUER, "sub": "alice", "aud": "api", "exp": NOW + 3600, "iat": NOW - 60,
            "scope": "orders:read orders:write"}
    base.update(extra)
    return base


def write(target: str, name: str, data) -> None:
    folder = os.path.join(FUZZ, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = json.dumps(data, separators=(",", ":")).encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def jwt_parse() -> None:
    kids = {"ES256": "ec-1", "ES384": "ec384-1", "RS256": "rsa-1", "PS256": "rsa-1", "EdDSA": "ed-1"}
    for alg, kid in kids.items():
        write("jwt_parse", f"valid-{alg.lower()}", compact({"alg": alg, "kid": kid, "typ": "at+jwt"}, claims(), alg))
    write("jwt_parse", "valid-es256-no-kid", compact({"alg": "ES256"}, claims(), "ES256"))
    write("jwt_parse", "valid-es256-actor",
          compact({"alg": "ES256", "kid": "ec-1"},
                  claims(aud=["api", "ledger"], act={"sub": "agent", "act": {"sub": "broker"}},
                         cnf={"jkt": "abc"}, amr=["pwd", "otp"], acr="mfa", auth_time=NOW - 100, iat=NOW - 0.5),
                  "ES256"))
    write("jwt_parse", "expired-es256", compact({"alg": "ES256", "kid": "ec-1"}, claims(exp=NOW - 3600), "ES256"))
    write("jwt_parse", "wrong-audience", compact({"alg": "ES256", "kid": "ec-1"}, claims(aud="other"), "ES256"))
    write("jwt_parse", "unknown-kid", compact({"alg": "ES256", "kid": "k9"}, claims(), "ES256"))
    write("jwt_parse", "alg-none", compact({"alg": "none"}, claims()).rsplit(".", 1)[0] + ".")
    write("jwt_parse", "alg-hs256", compact({"alg": "HS256"}, claims()))
    write("jwt_parse", "crit", compact({"alg": "ES256", "crit": ["exp"], "exp": 1}, claims()))
    write("jwt_parse", "duplicate-sub",
          b64(b'{"alg":"ES256"}') + "." + b64(b'{"sub":"a","sub":"b"}') + "." + b64(b"\x01"))
    write("jwt_parse", "jwe-five-segments", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d")
    write("jwt_parse", "padded", b64(b'{"alg":"ES256"}') + "=." + b64(b"{}") + ".AQ")


def claim_rules() -> None:
    def seed(name: str, requirement: dict, token_claims: dict, now: int = NOW) -> None:
        data = json.dumps(requirement).encode() + b"\0" + json.dumps(token_claims).encode() + b"\0" + \
            str(now).encode()
        write("claim_rules", name, data)

    seed("scopes", {"scopes": {"allOf": ["orders:read"], "anyOf": ["admin", "orders:write"]}},
         {"scope": "orders:read orders:write", "scp": ["admin"]})
    seed("claims", {"claims": [{"claim": "tenant", "equals": "acme"}, {"claim": "/realm_access/roles",
                                                                        "contains": "trader"},
                               {"claim": "group", "oneOf": ["ops", "dev"]}, {"claim": "impersonator",
                                                                             "present": False}]},
         {"tenant": "acme", "realm_access": {"roles": ["trader", "viewer"]}, "group": "ops"})
    seed("pointer-escapes", {"claims": [{"claim": "/a~1b/c~0d/0", "equals": 1}]}, {"a/b": {"c~d": [1, 2]}})
    seed("step-up", {"scopes": {"allOf": ["transfer"]}, "stepUp": {"acrValues": ["mfa", "hwk"], "maxAgeSeconds": 300}},
         {"scope": "transfer", "acr": "mfa", "auth_time": NOW - 200})
    seed("step-up-stale", {"stepUp": {"maxAgeSeconds": 300}}, {"acr": "pwd", "auth_time": NOW - 301})
    seed("null-equals", {"claims": [{"claim": "missing", "equals": None}]}, {"present": None})
    # Regression: "01" is no RFC 6901 array index (it used to select roles[1]).
    # Regression: the age saturated at i64::MAX (an auth_time of i64::MIN passed a max_age of i64::MAX).
    seed("step-up-extremes", {"stepUp": {"maxAgeSeconds": 2**63 - 1}}, {"auth_time": -2**63})
    seed("pointer-leading-zero", {"claims": [{"claim": "/roles/01", "equals": "b"}]}, {"roles": ["a", "b"]})


EC_JWKS_INLINE = None  # filled in main()


def config_claim_enforcement(keys: dict) -> None:
    provider = {"name": "corp", "issuer": ISSUER, "audiences": ["api"], "algorithms": ["ES256", "RS256", "EdDSA"],
                "jwks": {"inline": keys}}
    write("config_claim_enforcement", "minimal", {"providers": [provider]})
    write("config_claim_enforcement", "full", {
        "providers": [provider, {"name": "partner", "issuer": "https://partner.example", "audiences": ["api"],
                                 "algorithms": ["PS256"], "clockSkewSeconds": 30, "requiredTyp": "at+jwt",
                                 "requireExpiration": True,
                                 "jwks": {"remote": {"cluster": "partner_idp", "path": "/.well-known/jwks.json",
                                                     "authority": "partner.example", "timeoutMs": 1500}}}],
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "action": "allow"},
            {"name": "orders", "match": {"pathPrefix": "/orders", "methods": ["GET", "post"], "host": "API.example"},
             "providers": ["corp"],
             "require": {"scopes": {"allOf": ["orders:read"]}, "claims": [{"claim": "tenant", "equals": "acme"}],
                         "stepUp": {"acrValues": ["mfa"], "maxAgeSeconds": 300}}}],
        "defaultAction": "deny", "realm": "orders",
        "resourceMetadata": "https://api.example/.well-known/oauth-protected-resource",
        "forwardClaims": [{"claim": "sub", "header": "X-User-Id"}, {"claim": "/realm_access/roles",
                                                                   "header": "x-roles"}],
        "forwardPayloadHeader": "x-jwt-payload", "forwardToken": False, "cache": {"maxEntries": 100},
        "maxTokenBytes": 8192, "auditLog": False, "tokenSource": {"header": "x-token", "prefix": ""}})
    write("config_claim_enforcement", "misspelled-field", '{"providers":[],"rutes":[]}')
    write("config_claim_enforcement", "pretty",
          json.dumps({"providers": [provider], "routes": [{"match": {"pathPrefix": "/"}}]}, indent=2))


def config_obo() -> None:
    base = {
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "agent-broker",
                  "clientSecret": "s3cr3t"}],
        "subjectToken": {"validation": "decodeOnly", "issuers": [ISSUER]},
        "targets": [
            {"name": "portfolio", "match": {"host": "portfolio.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            {"name": "market", "match": {"host": "market.internal"}, "mode": "clientCredentials", "idp": "corp",
             "audiences": ["market-data"], "scope": "quotes"},
            {"name": "graph", "match": {"host": "graph.internal"}, "mode": "entraOnBehalfOf", "idp": "corp",
             "scope": "api://graph/.default"}],
        "cache": {"expiryMarginSeconds": 30}}
    write("config_obo_credential_injection", "three-modes", base)
    minimal = dict(base)
    minimal["targets"] = base["targets"][:1]
    minimal.pop("cache")
    write("config_obo_credential_injection", "minimal", minimal)
    write("config_obo_credential_injection", "unknown-field",
          '{"idps":[{"name":"corp","clientSecrets":"x"}],"targets":[]}')


def in_task_config(keys: dict | None) -> dict:
    jwks = {"inline": keys} if keys else {"remote": {"cluster": "bank_idp", "path": "/jwks"}}
    return {
        "secondaryIdp": {
            "name": "bank", "authorizationEndpoint": BANK + "/authorize", "tokenEndpoint": BANK + "/token",
            "cluster": "bank_idp", "tokenPath": "/token", "clientId": "transfer-gateway", "clientSecret": "s3cr3t",
            "redirectUri": "https://gw.example/a2a/oauth/callback", "scopes": ["transfers:write"],
            "audience": "bank-api",
            "providers": [{"name": "bank", "issuer": BANK, "audiences": ["bank-api"], "algorithms": ["ES256"],
                           "jwks": jwks}]},
        "rules": [{"name": "transfers", "match": {"pathPrefix": "/"},
                   "when": {"source": "data", "pointer": "/operation", "equals": "transfer"}}],
        "primaryIdentity": {"header": "x-user-id"},
        "identityHeader": "x-baton-user"}


def config_in_task(keys: dict) -> None:
    write("config_in_task_auth_code", "remote-keys", in_task_config(None))
    write("config_in_task_auth_code", "inline-keys", in_task_config(keys))
    full = in_task_config(None)
    full["secondaryIdp"].update({"clientAuthMethod": "clientSecretPost", "timeoutMs": 2000,
                                 "extraAuthorizeParameters": {"acr_values": "mfa"}})
    full.update({"require": {"scopes": {"allOf": ["transfers:write"]}, "stepUp": {"acrValues": ["mfa"]}},
                 "primaryIdentity": {"header": "authorization", "claim": "sub", "prefix": "Bearer "},
                 "inject": {"header": "x-bank-token", "prefix": ""}, "callbackPath": "/cb",
                 "tokenTimeoutSeconds": 600, "challengeStatus": 401, "onInvalidCredential": "reject",
                 "maxBodyBytes": 65536, "enrichAgentChallenges": False, "cache": {"maxEntries": 10},
                 "auditLog": False})
    write("config_in_task_auth_code", "full", full)
    # Regression: the endpoint's own query could set what the gateway sets.
    query = in_task_config(None)
    query["secondaryIdp"]["authorizationEndpoint"] = BANK + "/authorize?prompt=login&st%61te=x"
    write("config_in_task_auth_code", "endpoint-query-state", query)


def token_response() -> None:
    # Byte 0: status (see fuzz_targets/token_response.rs), byte 1: expectation flags, then the body.
    def seed(name: str, status: int, flags: int, body) -> None:
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        write("token_response", name, bytes([status, flags]) + body)

    access = "urn:ietf:params:oauth:token-type:access_token"
    seed("exchange", 0, 3, {"access_token": "eyJ.a.b", "token_type": "Bearer", "issued_token_type": access,
                            "expires_in": 3600, "scope": "portfolio:read"})
    seed("client-credentials", 0, 0, {"access_token": "opaque-123", "token_type": "bearer", "expires_in": 60})
    seed("entra-v1-strings", 0, 0, {"access_token": "x.y.z", "token_type": "Bearer", "expires_in": "3599",
                                    "ext_expires_in": "3599"})
    seed("n-a", 0, 1, {"access_token": "id.token.sig", "token_type": "N_A",
                       "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"})
    seed("invalid-grant", 1, 0, {"error": "invalid_grant", "error_description": "code expired"})
    seed("invalid-client-401", 2, 0, {"error": "invalid_client"})
    seed("server-error", 7, 0, "<html>502 Bad Gateway</html>")
    seed("rate-limited", 5, 0, {"error": "slow_down"})
    seed("no-response", 16, 0, "")
    seed("token-with-space", 0, 0, {"access_token": "a b", "token_type": "Bearer"})


def a2a_message(bank_token: str) -> None:
    # Byte 0: mode (see fuzz_targets/a2a_message.rs), then the body.
    def seed(name: str, mode: int, body) -> None:
        write("a2a_message", name, bytes([mode]) + json.dumps(body, separators=(",", ":")).encode())

    def v03(parts, task=None):
        message = {"kind": "message", "role": "user", "messageId": "m1", "parts": parts}
        if task:
            message.update({"taskId": task, "contextId": "ctx-1"})
        return {"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {"message": message}}

    def v10(method, parts, task=None):
        message = {"role": "ROLE_USER", "messageId": "m1", "parts": parts}
        if task:
            message["taskId"] = task
        return {"jsonrpc": "2.0", "id": 7, "method": method, "params": {"message": message}}

    transfer = [{"kind": "text", "text": "send 100 to bob"},
                {"kind": "data", "data": {"operation": "transfer", "amount": 100}}]
    seed("v03-transfer", 0, v03(transfer))
    seed("v10-stream-transfer", 2, v10("SendStreamingMessage", [{"text": "send"},
                                                                {"data": {"operation": "transfer"}}], "t-9"))
    seed("v03-access-token", 0, v03([{"kind": "data", "data": {"operation": "transfer",
                                                                "auth_credentials": {"accessToken": bank_token}}}],
                                     "t-1"))
    seed("v03-code-state", 0, v03([{"kind": "text", "text": "here"},
                                   {"kind": "data", "data": {"operation": "transfer",
                                                             "auth_credentials": {"code": "c0de", "state": "st"}}}],
                                  "t-1"))
    seed("v03-metadata-credential", 0, {**v03([{"kind": "text", "text": "hi"}]),
                                        "params": {"message": {"kind": "message", "role": "user",
                                                               "messageId": "m2",
                                                               "parts": [{"kind": "text", "text": "hi"}],
                                                               "metadata": {"auth_credentials":
                                                                            {"accessToken": "t0k"}}}}})
    seed("v03-not-a-transfer-with-credential", 0,
         v03([{"kind": "data", "data": {"operation": "balance", "auth_credentials": {"accessToken": "t"}}}]))
    seed("tasks-get", 0, {"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "t1"}})
    seed("agent-v03-auth-required", 1, {"jsonrpc": "2.0", "id": "req-1", "result": {
        "kind": "task", "id": "t-7", "contextId": "ctx-7",
        "status": {"state": "auth-required", "message": {"kind": "message", "role": "agent", "messageId": "a1",
                                                         "parts": [{"kind": "text", "text": "need bank"}]}}}})
    seed("agent-v10-auth-required", 1, {"jsonrpc": "2.0", "id": 7, "result": {"task": {
        "id": "t-8", "contextId": "ctx-8", "status": {"state": "TASK_STATE_AUTH_REQUIRED"}}}})
    # Regression: a status message without a list of parts was passed on without the challenge.
    seed("agent-v03-message-without-parts", 1, {"jsonrpc": "2.0", "id": 1, "result": {
        "kind": "task", "id": "t", "status": {"state": "auth-required", "message": {"role": "agent"}}}})
    seed("agent-v10-parts-not-a-list", 1, {"jsonrpc": "2.0", "id": 1, "result": {"task": {
        "id": "t", "status": {"state": "TASK_STATE_AUTH_REQUIRED", "message": {"role": "ROLE_AGENT", "parts": "x"}}}}})
    seed("agent-v03-completed", 1, {"jsonrpc": "2.0", "id": "req-1", "result": {
        "kind": "task", "id": "t-7", "status": {"state": "completed"}}})


def www_authenticate() -> None:
    # Byte 0: error code selector, then realm, description, scopes, acr_values, max_age and
    # resource_metadata separated by NUL (see fuzz_targets/www_authenticate.rs).
    def seed(name: str, selector: int, *fields: str) -> None:
        write("www_authenticate", name, bytes([selector]) + "\0".join(fields).encode())

    seed("bare", 0, "api")
    seed("invalid-token", 2, "api", "token is expired", "", "", "",
         "https://api.example/.well-known/oauth-protected-resource")
    seed("insufficient-scope", 3, "orders", "token lacks a required scope", "orders:read orders:write")
    seed("step-up", 4, "", "a stronger or more recent authentication is required", "",
         "urn:mace:incommon:iap:silver mfa", "300")
    seed("injection", 1, 'a"b', 'x\\y\r\nSet-Cookie: s=1 \u00e9\u2028', "", "", "18446744073709551615")


def form() -> None:
    # Pairs separated by NUL (name, value, name, ...); the whole input is also read as a query.
    write("form", "token-request", "grant_type\0client_credentials\0scope\0a b/c\0x\0\u00e9&=+%")
    write("form", "callback-query", "code=a%2Bb&state=x+y&code=z&flag&&a=%zz&b=%4")
    # A sign is not a hex digit: `%+5` is no escape (u8::from_str_radix would read byte 5).
    write("form", "signed-escape", "_method=%+5&a=%-5&b=%+F")
    write("form", "path-escapes", "caf%C3%A9/%2e%2e/x%4a?q=%+0")


def sse() -> None:
    # Bytes 0 and 1 choose where the stream is cut; the rest is the stream.
    write("sse", "a2a-stream", b"\x05\x30" + b'data: {"jsonrpc":"2.0","id":1,"result":{"task":{"id":"t"}}}\n\n'
          + b': keep-alive\r\n\r\nevent: x\rid: 7\rdata: {"a":\rdata:1}\r\r')
    # A CRLF split between chunks, and an unterminated end.
    write("sse", "split-crlf", b"\x09\x0a" + b"data: one\r\n\r\ndata: two\r\n\r\ndata: tail")
    write("sse", "no-space-and-bare-field", b"\x00\xff" + b"data:x\ndata\n\ndata:  y\n\n")


def main() -> None:
    keys = jwks()
    with open(os.path.join(FUZZ, "src", "jwks.json"), "w") as f:
        json.dump(keys, f, indent=2)
        f.write("\n")
    ec_only = {"keys": [keys["keys"][0]]}
    jwt_parse()
    claim_rules()
    config_claim_enforcement(keys)
    config_obo()
    config_in_task(ec_only)
    token_response()
    bank = compact({"alg": "ES256", "kid": "ec-1", "typ": "at+jwt"},
                   {"iss": BANK, "sub": "alice", "aud": "bank-api", "exp": NOW + 3600, "iat": NOW - 1,
                    "scope": "transfers:write"}, "ES256")
    a2a_message(bank)
    www_authenticate()
    form()
    sse()


if __name__ == "__main__":
    main()
