//! Tokens signed by an identity provider (Auth0, Keycloak, Cognito, Okta, Entra ID, ...),
//! checked against the public keys it publishes as a JWKS.
//!
//! The JWKS address is configured directly or found by OIDC discovery from the issuer
//! (`{issuer}/.well-known/openid-configuration`). Keys are cached by key id. A token whose key
//! id is not cached makes one fetch of the set (the provider has rotated its keys), but never
//! more than one per [`ProviderConfig::min_refresh`], so tokens with made-up key ids cannot
//! turn oms into a flood against the provider. A set older than [`MAX_KEY_SET_AGE`] is
//! refreshed in the background, so keys the provider has withdrawn stop being accepted.
//!
//! Only public-key algorithms are accepted, each only with a key of its own family: an HS256
//! token "signed" with a provider's public key as the secret is refused before any key is used.

use super::{header_of, refusal, AuthError, MAX_CLOCK_SKEW_SECS};
use anyhow::Context as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A key set older than this is fetched again in the background.
pub const MAX_KEY_SET_AGE: Duration = Duration::from_secs(600);
/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The RSA algorithms, which any RSA key may verify unless it names one.
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Whether `alg` is a public-key algorithm: never an HMAC one, whose "key" would be public.
fn is_public_key_algorithm(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Where the keys come from and what a token must say.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The JWKS address; without it, found by discovery from `issuer`.
    pub jwks_url: Option<String>,
    /// The only accepted `iss`; also where discovery starts.
    pub issuer: Option<String>,
    /// The accepted `aud` values (at least one).
    pub audience: Vec<String>,
    /// The least time between two fetches made for unknown key ids.
    pub min_refresh: Duration,
    /// How long one fetch may take.
    pub fetch_timeout: Duration,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub clock_skew_secs: u64,
}

/// Verifies tokens against an identity provider's published keys; cheap to clone.
#[derive(Clone)]
pub struct IdentityProvider {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProviderConfig,
    validation: Validation,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// Held while fetching, so concurrent requests for an unknown key make one fetch.
    fetching: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<ProviderKey>,
    fetched_at: Option<Instant>,
}

#[derive(Clone)]
struct ProviderKey {
    kid: Option<String>,
    key: Arc<DecodingKey>,
    algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_failed: bool,
    /// The JWKS address found by discovery.
    discovered_jwks_url: Option<String>,
}

impl IdentityProvider {
    pub fn new(config: ProviderConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.jwks_url.is_some() || config.issuer.is_some(),
            "an identity provider needs JWT_JWKS_URL or JWT_ISSUER"
        );
        anyhow::ensure!(
            !config.audience.is_empty(),
            "JWT_AUDIENCE is required with an identity provider: without it, a token the provider issued for any other application would be accepted"
        );
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_nbf = true;
        validation.leeway = config.clock_skew_secs.min(MAX_CLOCK_SKEW_SECS);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.set_audience(&config.audience);
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.fetch_timeout)
            .timeout(config.fetch_timeout)
            .user_agent(concat!("oms/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client for the identity provider")?;
        Ok(IdentityProvider {
            inner: Arc::new(Inner {
                config,
                validation,
                http,
                keys: RwLock::default(),
                fetching: tokio::sync::Mutex::default(),
            }),
        })
    }

    /// The clock skew allowed after `exp`, in seconds.
    pub fn leeway(&self) -> u64 {
        self.inner.validation.leeway
    }

    /// Fetches the key set now (at start-up, so the first requests need not wait for it).
    /// Returns how many signing keys it holds.
    pub async fn prefetch(&self) -> anyhow::Result<usize> {
        let mut state = self.inner.fetching.lock().await;
        self.inner.fetch_into(&mut state).await?;
        Ok(self.inner.read_keys().keys.len())
    }

    /// The claims of a bare token signed with one of the provider's keys.
    pub async fn verify_claims(&self, token: &str) -> Result<serde_json::Value, AuthError> {
        let header = header_of(token)?;
        if !is_public_key_algorithm(header.alg) {
            return Err(AuthError::Invalid(format!(
                "{:?} tokens are not accepted; tokens must be signed by the identity provider (RS256, ES256 or another public-key algorithm)",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        if !key.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "its algorithm {:?} does not match its key",
                header.alg
            )));
        }
        let mut validation = self.inner.validation.clone();
        validation.algorithms = vec![header.alg];
        jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|error| refusal(&error))
    }

    /// The cached key `kid` names, fetching the set once if it is not there.
    async fn key_for(&self, kid: Option<&str>) -> Result<ProviderKey, AuthError> {
        let asked_at = Instant::now();
        if let Some(key) = self.inner.read_keys().find(kid) {
            self.refresh_if_stale();
            return Ok(key);
        }
        let mut state = self.inner.fetching.lock().await;
        // Another request may have fetched the set while this one waited.
        let fetched_since = self
            .inner
            .read_keys()
            .fetched_at
            .is_some_and(|fetched| fetched >= asked_at);
        let may_fetch = state
            .last_attempt
            .is_none_or(|last| last.elapsed() >= self.inner.config.min_refresh);
        if !fetched_since && may_fetch {
            if let Err(error) = self.inner.fetch_into(&mut state).await {
                tracing::warn!(error = %format!("{error:#}"), "fetching the identity provider's signing keys failed");
            }
        }
        if let Some(key) = self.inner.read_keys().find(kid) {
            return Ok(key);
        }
        if state.last_failed {
            Err(AuthError::KeysUnavailable)
        } else {
            Err(AuthError::UnknownKey)
        }
    }

    /// Refreshes an old key set in the background, unless a fetch is already under way.
    fn refresh_if_stale(&self) {
        let stale = self
            .inner
            .read_keys()
            .fetched_at
            .is_some_and(|fetched| fetched.elapsed() >= MAX_KEY_SET_AGE);
        if !stale {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let Ok(mut state) = inner.fetching.try_lock() else {
                return;
            };
            if let Err(error) = inner.fetch_into(&mut state).await {
                tracing::warn!(error = %format!("{error:#}"), "refreshing the identity provider's signing keys failed; the cached keys stay in use");
            }
        });
    }
}

impl Inner {
    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fetches the key set (discovering its address first if needed) and caches it.
    async fn fetch_into(&self, state: &mut FetchState) -> anyhow::Result<()> {
        state.last_attempt = Some(Instant::now());
        state.last_failed = true;
        let jwks_url = match (&self.config.jwks_url, &state.discovered_jwks_url) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = self.discover().await?;
                state.discovered_jwks_url = Some(url.clone());
                url
            }
        };
        let document = self
            .get_json(&jwks_url)
            .await
            .with_context(|| format!("fetching the JWKS at {jwks_url}"))?;
        let keys =
            signing_keys(&document).with_context(|| format!("reading the JWKS at {jwks_url}"))?;
        let kids: Vec<&str> = keys.iter().filter_map(|key| key.kid.as_deref()).collect();
        tracing::info!(%jwks_url, keys = keys.len(), kids = ?kids, "fetched the identity provider's signing keys");
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = KeySet {
            keys,
            fetched_at: Some(Instant::now()),
        };
        state.last_failed = false;
        Ok(())
    }

    /// The JWKS address from the issuer's OIDC discovery document.
    async fn discover(&self) -> anyhow::Result<String> {
        let issuer = self
            .config
            .issuer
            .as_deref()
            .context("no issuer to discover from")?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document = self
            .get_json(&url)
            .await
            .with_context(|| format!("fetching the OIDC discovery document at {url}"))?;
        let named_issuer = document.get("issuer").and_then(|value| value.as_str());
        anyhow::ensure!(
            named_issuer == Some(issuer),
            "the discovery document at {url} names the issuer {named_issuer:?}, not {issuer:?}; set JWT_ISSUER to exactly the `iss` of the provider's tokens"
        );
        document
            .get("jwks_uri")
            .and_then(|value| value.as_str())
            .map(str::to_owned)
            .with_context(|| format!("the discovery document at {url} has no jwks_uri"))
    }

    async fn get_json(&self, url: &str) -> anyhow::Result<serde_json::Value> {
        let response = self.http.get(url).send().await?.error_for_status()?;
        anyhow::ensure!(
            response
                .content_length()
                .is_none_or(|length| length as usize <= MAX_DOCUMENT_BYTES),
            "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
        );
        let body = response.bytes().await?;
        anyhow::ensure!(
            body.len() <= MAX_DOCUMENT_BYTES,
            "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
        );
        serde_json::from_slice(&body).context("the document is not JSON")
    }
}

impl KeySet {
    /// The key `kid` names; a token without a key id may use the only key of a one-key set.
    fn find(&self, kid: Option<&str>) -> Option<ProviderKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .cloned(),
            None if self.keys.len() == 1 => self.keys.first().cloned(),
            None => None,
        }
    }
}

/// The signing keys of a JWKS document; keys for encryption, symmetric keys and keys of
/// unsupported types are left out.
fn signing_keys(document: &serde_json::Value) -> anyhow::Result<Vec<ProviderKey>> {
    let entries = document
        .get("keys")
        .and_then(|keys| keys.as_array())
        .context("a JWKS is an object with a `keys` array")?;
    let keys: Vec<ProviderKey> = entries
        .iter()
        .filter_map(|entry| {
            let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                return None;
            }
            let algorithms = algorithms_for(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(ProviderKey {
                kid: jwk.common.key_id.clone(),
                key: Arc::new(key),
                algorithms,
            })
        })
        .collect();
    anyhow::ensure!(
        !keys.is_empty(),
        "it holds no usable signing key (RSA, EC P-256/P-384 or Ed25519)"
    );
    Ok(keys)
}

/// The algorithms a key may verify: the one it names, else all of its family.
fn algorithms_for(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(family),
        Some(named) => {
            let named = key_algorithm(named)?;
            family.contains(&named).then(|| vec![named])
        }
    }
}

fn key_algorithm(named: KeyAlgorithm) -> Option<Algorithm> {
    Some(match named {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A 2048-bit RSA public key and a P-256 public key, as a provider publishes them.
    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn rsa_ec_and_ed25519_keys_are_kept_with_their_algorithms() {
        let document = json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "r2", "alg": "RS256", "n": RSA_N, "e": "AQAB"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": EC_X, "y": EC_Y},
        ]});
        let keys = signing_keys(&document).unwrap();
        let kids: Vec<_> = keys.iter().map(|key| key.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["r1", "r2", "e1"]);
        assert!(keys[0].algorithms.contains(&Algorithm::PS256));
        assert_eq!(keys[1].algorithms, [Algorithm::RS256]);
        assert_eq!(keys[2].algorithms, [Algorithm::ES256]);
    }

    #[test]
    fn symmetric_encryption_and_mismatched_keys_are_left_out() {
        let document = json!({"keys": [
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "says-es256", "alg": "ES256", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "says-hs256", "alg": "HS256", "n": RSA_N, "e": "AQAB"},
            {"kty": "unknown", "kid": "odd"},
            {"kty": "RSA", "kid": "good", "n": RSA_N, "e": "AQAB"},
        ]});
        let keys = signing_keys(&document).unwrap();
        let kids: Vec<_> = keys.iter().map(|key| key.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["good"]);
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        assert!(signing_keys(&json!({"nope": []})).is_err());
        assert!(signing_keys(&json!({"keys": [{"kty": "oct", "k": "YWJj"}]})).is_err());
    }

    #[test]
    fn a_token_without_a_key_id_uses_the_only_key_of_a_one_key_set() {
        let one = KeySet {
            keys: signing_keys(&json!({"keys": [{"kty": "RSA", "n": RSA_N, "e": "AQAB"}]}))
                .unwrap(),
            fetched_at: None,
        };
        assert!(one.find(None).is_some());
        assert!(one.find(Some("other")).is_none());
        let two = KeySet {
            keys: signing_keys(&json!({"keys": [
                {"kty": "RSA", "kid": "a", "n": RSA_N, "e": "AQAB"},
                {"kty": "RSA", "kid": "b", "n": RSA_N, "e": "AQAB"},
            ]}))
            .unwrap(),
            fetched_at: None,
        };
        assert!(two.find(None).is_none());
        assert!(two.find(Some("b")).is_some());
    }

    #[test]
    fn a_provider_needs_an_audience_and_a_key_source() {
        let config = ProviderConfig {
            jwks_url: Some("http://127.0.0.1:1/jwks".into()),
            issuer: None,
            audience: vec![],
            min_refresh: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(1),
            clock_skew_secs: 5,
        };
        let no_audience = IdentityProvider::new(config.clone()).err().unwrap();
        assert!(no_audience.to_string().contains("JWT_AUDIENCE"));
        let no_source = IdentityProvider::new(ProviderConfig {
            jwks_url: None,
            audience: vec!["oms".into()],
            ..config
        })
        .err()
        .unwrap();
        assert!(no_source.to_string().contains("JWT_JWKS_URL or JWT_ISSUER"));
    }
}
