//! obo-credential-injection with `delegation.caller: peerCertificate` behind
//! a real mTLS listener: the caller is the URI SAN of the client certificate
//! Envoy verified, never a header or a certificate Envoy did not verify.
//! A certificate authority and client certificates are made in the test
//! (rcgen); the client is rustls presenting them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use baton_harness::{Envoy, EnvoySpec, body_json};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse};
use mock_idp::{DEMO_BROKER_SECRET, MockIdp, decode_claims_unverified};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use support::*;

const BROKER: &str = "spiffe://finport.test/ns/finport/sa/agent-broker";
const ROGUE: &str = "spiffe://finport.test/ns/finport/sa/rogue";

/// A certificate authority that signs the listener's and the clients'
/// certificates.
struct Authority {
    key: KeyPair,
    cert: Certificate,
}

/// A certificate with its private key.
struct Identity {
    cert: Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        Authority { key, cert }
    }

    /// The listener's certificate, for `localhost`.
    fn server(&self) -> Identity {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A workload's certificate whose SANs are `uris`.
    fn client(&self, uris: &[&str]) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = uris.iter().map(|uri| SanType::URI((*uri).try_into().unwrap())).collect();
        params.distinguished_name.push(DnType::CommonName, uris.first().copied().unwrap_or("no SAN"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Identity { cert, key }
    }
}

/// The listener's TLS: its certificate, and client certificates verified
/// against `trusted` (required or not).
fn listener_tls(server: &Identity, trusted: &Authority, require_client_certificate: bool) -> Value {
    json!({
        "require_client_certificate": require_client_certificate,
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"inline_string": server.cert.pem()},
                                  "private_key": {"inline_string": server.key.serialize_pem()}}],
            "validation_context": {"trusted_ca": {"inline_string": trusted.cert.pem()}}
        }
    })
}

/// Sends `request` over TLS to `addr`, presenting `identity` if any.
fn send_tls(
    addr: SocketAddr,
    authority: &Authority,
    identity: Option<&Identity>,
    request: &ClientRequest,
) -> Result<ClientResponse, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(authority.cert.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => {
            let chain: Vec<CertificateDer<'static>> = vec![identity.cert.der().clone()];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key.serialize_der()));
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    http_kit::send_on(rustls::StreamOwned::new(connection, tcp), addr, request).map_err(|e| e.to_string())
}

/// Two targets, each allowed to the broker's certificate only: the user's
/// portfolio (token exchange with the user's verified token) and market
/// data (the gateway's own token, for which the certificate alone is enough).
fn config(idp: &MockIdp) -> Value {
    json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 1000,
                  "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET}],
        "subjectToken": {"validation": "jwks", "providers": [{
            "name": "corp", "issuer": idp.issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256"],
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}]},
        "delegation": {"caller": "peerCertificate", "allow": [{"caller": BROKER, "targets": ["portfolio", "market"]}]},
        "targets": [
            {"name": "portfolio", "match": {"host": "portfolio.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            {"name": "market", "match": {"host": "market.internal"}, "mode": "clientCredentials", "idp": "corp",
             "audiences": ["market-data"], "scope": "quotes"}
        ]
    })
}

struct Mesh {
    authority: Authority,
    idp: MockIdp,
    backend: EchoBackend,
    envoy: Envoy,
}

fn mesh(require_client_certificate: bool) -> Mesh {
    let authority = Authority::new("finport mesh CA");
    let idp = idp();
    let backend = backend();
    let spec = EnvoySpec::new(backend.addr())
        .cluster("idp", idp.addr())
        .filter("obo_credential_injection", config(&idp))
        .downstream_tls(listener_tls(&authority.server(), &authority, require_client_certificate));
    let envoy = Envoy::start(&spec).unwrap_or_else(|error| panic!("Envoy did not start: {error}"));
    Mesh { authority, idp, backend, envoy }
}

impl Mesh {
    fn call(
        &self,
        identity: Option<&Identity>,
        host: &str,
        extra: &[(&str, &str)],
    ) -> Result<ClientResponse, String> {
        let mut request = ClientRequest::get("/api/positions").header("host", host);
        for (name, value) in extra {
            request = request.header(name, value);
        }
        send_tls(self.envoy.addr(), &self.authority, identity, &request)
    }

    fn alice(&self) -> String {
        let mut claims = self.idp.standard_claims("alice", "agent-broker", 300);
        claims["scope"] = json!("portfolio:read openid");
        // The token's own client is not who calls: the certificate is.
        claims["azp"] = json!("finport-app");
        claims["client_id"] = json!("finport-app");
        format!("Bearer {}", self.idp.mint(claims))
    }
}

fn upstream_claims(backend: &EchoBackend) -> Value {
    let requests = backend.requests();
    let authorization = requests.last().unwrap().header("authorization").unwrap().to_string();
    decode_claims_unverified(authorization.strip_prefix("Bearer ").unwrap()).unwrap()
}

#[test]
fn the_caller_is_the_certificate_envoy_verified() {
    let mesh = mesh(true);
    let broker = mesh.authority.client(&[BROKER]);
    let alice = mesh.alice();

    let exchanged = mesh.call(Some(&broker), "portfolio.internal", &[("authorization", &alice)]).unwrap();
    assert_eq!(exchanged.status, 200, "{}", exchanged.body_str());
    let claims = upstream_claims(&mesh.backend);
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("alice"), Some("portfolio-agent")));

    let own = mesh.call(Some(&broker), "market.internal", &[]).unwrap();
    assert_eq!(own.status, 200, "{}", own.body_str());
    assert_eq!(upstream_claims(&mesh.backend)["aud"], "market-data");
    assert_eq!(mesh.backend.requests().len(), 2);
    assert_eq!(mesh.envoy.counter("baton_obo.denied.delegation"), 0);
}

#[test]
fn another_workload_is_refused_whatever_it_claims() {
    let mesh = mesh(true);
    let rogue = mesh.authority.client(&[ROGUE]);
    // The allowed name as a second SAN: Envoy exposes the first URI SAN.
    let second = mesh.authority.client(&[ROGUE, BROKER]);
    let no_uri = mesh.authority.client(&[]);
    let alice = mesh.alice();
    let xfcc = format!("By={BROKER};URI={BROKER}");
    for (name, identity) in [("rogue", &rogue), ("broker as second SAN", &second), ("no URI SAN", &no_uri)] {
        for (host, headers) in [
            ("portfolio.internal", vec![("authorization", alice.as_str())]),
            ("market.internal", vec![]),
            // A header naming the broker is what any client can write.
            ("market.internal", vec![("x-forwarded-client-cert", xfcc.as_str())]),
            (
                "portfolio.internal",
                vec![("authorization", alice.as_str()), ("x-forwarded-client-cert", xfcc.as_str())],
            ),
        ] {
            let refused = mesh.call(Some(identity), host, &headers).unwrap();
            assert_eq!(refused.status, 403, "{name} to {host}: {}", refused.body_str());
            assert_eq!(body_json(&refused)["error"], "access_denied", "{name} to {host}");
        }
    }
    assert!(mesh.backend.requests().is_empty(), "a caller not allowed reached an upstream");
    assert_eq!(mesh.envoy.counter("baton_obo.denied.delegation"), 12);
    assert!(
        mesh.idp
            .token_requests()
            .iter()
            .all(|r| r.grant_type.as_deref() != Some(mock_idp::GRANT_TOKEN_EXCHANGE)),
        "an exchange was sent for a refused caller"
    );
}

#[test]
fn a_certificate_from_another_authority_does_not_connect() {
    let mesh = mesh(true);
    let impostor = Authority::new("impostor CA").client(&[BROKER]);
    let alice = mesh.alice();
    for host in ["portfolio.internal", "market.internal"] {
        // Envoy refuses the handshake; the client reads its alert.
        let answer = mesh.call(Some(&impostor), host, &[("authorization", &alice)]);
        let refused = Err("received fatal alert: UnknownCA".to_string());
        assert_eq!(answer.map(|a| a.status), refused, "{host}");
        let without = mesh.call(None, host, &[("authorization", &alice)]);
        let refused = Err("received fatal alert: CertificateRequired".to_string());
        assert_eq!(without.map(|a| a.status), refused, "{host} without a certificate");
    }
    assert!(mesh.backend.requests().is_empty());
}

#[test]
fn without_a_certificate_no_caller_is_named() {
    // A listener that asks for but does not require client certificates:
    // a connection without one names no caller, and the policy refuses it.
    let mesh = mesh(false);
    let alice = mesh.alice();
    for (host, headers) in [
        ("portfolio.internal", vec![("authorization", alice.as_str())]),
        ("market.internal", vec![]),
        (
            "market.internal",
            vec![("x-forwarded-client-cert", "By=x;URI=spiffe://finport.test/ns/finport/sa/agent-broker")],
        ),
    ] {
        let refused = mesh.call(None, host, &headers).unwrap();
        assert_eq!(refused.status, 403, "{host}: {}", refused.body_str());
    }
    assert!(mesh.backend.requests().is_empty());
    // The same listener, with the broker's certificate, serves it.
    let broker = mesh.authority.client(&[BROKER]);
    assert_eq!(mesh.call(Some(&broker), "market.internal", &[]).unwrap().status, 200);
}
