//! Tokens from an identity provider: the test runs a small one of its own over HTTP on
//! loopback (OIDC discovery and a JWKS, shaped like Keycloak's), with keys openssl makes for
//! the test, and oms checks the tokens it signs.

use crate::helpers::{
    eventually, free_port, serve_locally, Deployment, Protocol, Subscription, TestApp,
};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const AUDIENCE: &str = "oms-api";

/// A key pair made by openssl, with its public half as a JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    private: EncodingKey,
    public_pem: Vec<u8>,
    jwk: Value,
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl runs");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "openssl {args:?} failed");
    output.stdout
}

impl SigningKey {
    fn rsa(kid: &str) -> SigningKey {
        Self::generate(kid, Algorithm::RS256)
    }

    fn ec(kid: &str) -> SigningKey {
        Self::generate(kid, Algorithm::ES256)
    }

    fn generate(kid: &str, alg: Algorithm) -> SigningKey {
        let (kind, option) = match alg {
            Algorithm::RS256 => ("RSA", "rsa_keygen_bits:2048"),
            _ => ("EC", "ec_paramgen_curve:P-256"),
        };
        let pem = openssl(&["genpkey", "-algorithm", kind, "-pkeyopt", option], None);
        let private = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        };
        Self::from_pem(kid, alg, private.unwrap(), &pem)
    }

    fn from_pem(kid: &str, alg: Algorithm, private: EncodingKey, pem: &[u8]) -> SigningKey {
        let mut jwk = Jwk::from_encoding_key(&private, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        SigningKey {
            kid: kid.to_owned(),
            alg,
            public_pem: openssl(&["pkey", "-pubout"], Some(pem)),
            private,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.private).unwrap()
    }
}

struct ProviderState {
    issuer: String,
    jwks: Mutex<Value>,
    fetches: AtomicUsize,
    /// Accept requests for the keys but never answer them.
    hanging: AtomicBool,
}

/// An OIDC provider on loopback: `{issuer}/.well-known/openid-configuration` and its JWKS.
struct TestProvider {
    issuer: String,
    state: Arc<ProviderState>,
    server: tokio::task::JoinHandle<()>,
}

impl TestProvider {
    async fn start() -> TestProvider {
        Self::start_on(free_port()).await
    }

    async fn start_on(port: u16) -> TestProvider {
        let issuer = format!("http://127.0.0.1:{port}/realms/shop");
        let state = Arc::new(ProviderState {
            issuer: issuer.clone(),
            jwks: Mutex::new(json!({ "keys": [] })),
            fetches: AtomicUsize::new(0),
            hanging: AtomicBool::new(false),
        });
        let router = Router::new()
            .route(
                "/realms/shop/.well-known/openid-configuration",
                get(|State(state): State<Arc<ProviderState>>| async move {
                    Json(json!({
                        "issuer": state.issuer,
                        "jwks_uri": format!("{}/protocol/openid-connect/certs", state.issuer),
                    }))
                }),
            )
            .route(
                "/realms/shop/protocol/openid-connect/certs",
                get(|State(state): State<Arc<ProviderState>>| async move {
                    if state.hanging.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    state.fetches.fetch_add(1, Ordering::SeqCst);
                    Json(state.jwks.lock().unwrap().clone())
                }),
            )
            .with_state(state.clone());
        let (_, server) = serve_locally(port, router).await;
        TestProvider {
            issuer,
            state,
            server,
        }
    }

    /// Publishes exactly `keys`.
    fn publish(&self, keys: &[&SigningKey]) {
        let keys: Vec<Value> = keys.iter().map(|key| key.jwk.clone()).collect();
        *self.state.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn hang(&self) {
        self.state.hanging.store(true, Ordering::SeqCst);
    }

    /// Claims this provider would put in a token for `sub` with realm `roles`.
    fn claims(&self, sub: &str, roles: &[&str]) -> Value {
        json!({
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now(),
            "exp": now() + 600,
            "realm_access": { "roles": roles },
        })
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// oms flags for tokens from a Keycloak-like provider whose staff have the realm role
/// `oms-staff`.
fn keycloak_flags(source: String) -> Vec<String> {
    vec![
        source,
        format!("--jwt-audience={AUDIENCE}"),
        "--jwt-role-claim=realm_access.roles".to_owned(),
        "--jwt-staff-roles=oms-staff".to_owned(),
        "--jwt-jwks-min-refresh-secs=1".to_owned(),
        "--jwt-jwks-timeout-secs=1".to_owned(),
    ]
}

async fn spawn_app(flags: &[String]) -> TestApp {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestApp::spawn_in(Deployment::new(), &flags).await
}

const UPSERT_ITEM: &str = "mutation($input: UpsertInventoryItemInput!) {
    upsertInventoryItem(input: $input) { item { sku quantity } userErrors { code } }
}";

fn item(sku: &str, quantity: i32) -> Value {
    json!({ "input": { "sku": sku, "name": format!("Item {sku}"), "quantity": quantity } })
}

const ANY_QUERY: &str = "{ inventoryItems(first: 1) { edges { node { sku } } } }";

/// The message of the refusal of `token`, which must be a 401 UNAUTHENTICATED.
async fn refusal_of(app: &TestApp, token: &str) -> String {
    let (status, body) = app.post(Some(token), ANY_QUERY, json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    body["errors"][0]["message"].as_str().unwrap().to_owned()
}

async fn is_accepted(app: &TestApp, token: &str) -> bool {
    app.post(Some(token), ANY_QUERY, json!({})).await.0 == 200
}

#[tokio::test]
async fn tokens_signed_by_the_identity_provider_name_the_user_and_their_realm_role() {
    let provider = TestProvider::start().await;
    let key = SigningKey::rsa("rsa-1");
    provider.publish(&[&key]);
    let app = spawn_app(&keycloak_flags(format!("--jwt-issuer={}", provider.issuer))).await;

    let staff = key.sign(&provider.claims("kc-sam", &["offline_access", "oms-staff"]));
    let data = app.query(&staff, UPSERT_ITEM, item("HORN", 5)).await;
    assert_eq!(data["upsertInventoryItem"]["item"]["quantity"], 5, "{data}");

    let customer = key.sign(&provider.claims("kc-alice", &["offline_access"]));
    let placed = app.place_order(&customer, &[("HORN", 1)], None).await;
    assert_eq!(placed["order"]["userId"], "kc-alice", "{placed}");
    let (_, body) = app
        .post(Some(&customer), UPSERT_ITEM, item("HORN", 99))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );

    // The same token opens a WebSocket (Subscription::connect waits for the acknowledgement).
    Subscription::connect(&app, &customer, Protocol::TransportWs).await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn tokens_for_another_audience_or_issuer_expired_or_forged_with_the_public_key_are_refused() {
    let provider = TestProvider::start().await;
    let key = SigningKey::rsa("rsa-1");
    provider.publish(&[&key]);
    let app = spawn_app(&keycloak_flags(format!("--jwt-issuer={}", provider.issuer))).await;
    let claims = provider.claims("kc-mallory", &["oms-staff"]);
    assert!(is_accepted(&app, &key.sign(&claims)).await);

    let other_audience = with(&claims, "aud", json!("billing-api"));
    let message = refusal_of(&app, &key.sign(&other_audience)).await;
    assert!(message.contains("audience"), "{message}");
    let other_issuer = with(&claims, "iss", json!("http://127.0.0.1:1/realms/evil"));
    let message = refusal_of(&app, &key.sign(&other_issuer)).await;
    assert!(message.contains("issuer"), "{message}");
    let expired = with(&claims, "exp", json!(now() - 600));
    let message = refusal_of(&app, &key.sign(&expired)).await;
    assert!(message.contains("expired"), "{message}");

    // The classic confusion: HS256 with the provider's public key as the shared secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(&key.public_pem).unwrap(),
    )
    .unwrap();
    let message = refusal_of(&app, &forged).await;
    assert!(
        message.contains("HS256 tokens are not accepted"),
        "{message}"
    );
    app.stop_and_drop_database().await;
}

fn with(claims: &Value, name: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    claims[name] = value;
    claims
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_unknown_key_ids_cannot_flood_the_provider() {
    let provider = TestProvider::start().await;
    let old = SigningKey::rsa("2026-rsa");
    provider.publish(&[&old]);
    let app = spawn_app(&keycloak_flags(format!("--jwt-issuer={}", provider.issuer))).await;
    let claims = provider.claims("kc-alice", &[]);
    assert!(is_accepted(&app, &old.sign(&claims)).await);

    // Forty tokens with made-up key ids at once: one fetch at most, every one refused.
    let stranger = SigningKey::ec("stranger");
    let fetches_before = provider.fetches();
    let refusals = futures_util::future::join_all((0..40).map(|n| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(format!("invented-{n}"));
        let token = jsonwebtoken::encode(&header, &claims, &stranger.private).unwrap();
        let app = &app;
        async move { refusal_of(app, &token).await }
    }))
    .await;
    assert!(
        refusals
            .iter()
            .all(|message| message.contains("key id (kid) is not among")),
        "{refusals:?}"
    );
    assert!(
        provider.fetches() - fetches_before <= 1,
        "{} fetches for 40 unknown key ids",
        provider.fetches() - fetches_before
    );

    // The provider rotates to a new ES256 key and withdraws the old one.
    let new = SigningKey::ec("2027-ec");
    provider.publish(&[&new]);
    let rotated = new.sign(&claims);
    eventually(Duration::from_secs(10), || async {
        if is_accepted(&app, &rotated).await {
            Ok(())
        } else {
            Err("the rotated key was never fetched".to_owned())
        }
    })
    .await;
    let message = refusal_of(&app, &old.sign(&claims)).await;
    assert!(message.contains("key id (kid) is not among"), "{message}");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn while_the_identity_provider_is_down_cached_keys_still_work_and_other_tokens_are_refused_promptly(
) {
    // oms starts while nothing answers at the JWKS address.
    let port = free_port();
    let jwks_url = format!("http://127.0.0.1:{port}/realms/shop/protocol/openid-connect/certs");
    let app = spawn_app(&keycloak_flags(format!("--jwt-jwks-url={jwks_url}"))).await;
    let key = SigningKey::rsa("rsa-1");
    let claims = json!({ "aud": AUDIENCE, "sub": "kc-alice", "exp": now() + 600 });
    let asked = Instant::now();
    let message = refusal_of(&app, &key.sign(&claims)).await;
    assert!(message.contains("cannot be fetched right now"), "{message}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );

    // The provider comes up: after the refresh floor, its keys are fetched.
    let provider = TestProvider::start_on(port).await;
    provider.publish(&[&key]);
    let token = key.sign(&claims);
    eventually(Duration::from_secs(10), || async {
        if is_accepted(&app, &token).await {
            Ok(())
        } else {
            Err("the keys were never fetched".to_owned())
        }
    })
    .await;

    // It stops answering: the cached key still works; a token for a key oms has not seen waits
    // for one bounded fetch (JWT_JWKS_TIMEOUT_SECS=1), never hangs.
    provider.hang();
    assert!(is_accepted(&app, &token).await);
    let unseen = SigningKey::ec("ec-2").sign(&claims);
    eventually(Duration::from_secs(10), || async {
        let asked = Instant::now();
        let message = refusal_of(&app, &unseen).await;
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
        // The first refusals may come from the floor before the fetch that hangs.
        if message.contains("cannot be fetched right now") {
            Ok(())
        } else {
            Err(message)
        }
    })
    .await;
    app.stop_and_drop_database().await;
}
