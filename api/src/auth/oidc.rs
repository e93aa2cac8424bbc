//! OIDC bearer tokens: issuer discovery, the issuer's signing keys (JWKS) with caching and
//! rotation, and verification of a token's signature, issuer, audience, expiry and not-before.
//!
//! Keys are fetched once at start and again when a token names a key id the cache does not hold
//! (a provider that rotates publishes the new key before signing with it), at most once per
//! `refresh_interval`, so a flood of tokens with made-up key ids cannot flood the provider.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::AuthError;

/// How tokens of one OIDC issuer are checked.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL; `<issuer>/.well-known/openid-configuration` must name the same issuer.
    pub issuer: String,
    /// The audience Stowage's tokens must carry (`aud`).
    pub audience: String,
    /// The claim holding the caller's groups (a list of strings); a token without it has none.
    pub groups_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// The shortest time between two fetches of the signing keys.
    pub refresh_interval: Duration,
    /// The public client `stowage login --device` uses at this issuer (one allowed the device
    /// authorization grant); clients are told it through `GET /v1/login-options`.
    pub device_client_id: Option<String>,
}

impl OidcConfig {
    /// A configuration with the usual defaults: `groups` claim, 30 s leeway, keys refreshed at
    /// most every 10 s.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_string(),
            audience: audience.into(),
            groups_claim: "groups".into(),
            leeway: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(10),
            device_client_id: None,
        }
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `sub` claim.
    pub subject: String,
    /// The groups claim, empty when the token has none.
    pub groups: Vec<String>,
    /// When the token expires (seconds since the epoch).
    pub expires_at: u64,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Claims every token must carry; the rest are read from the raw claim map.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// A signing key ready for verification, with the one algorithm it may be used with.
struct SigningKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

struct KeyCache {
    keys: HashMap<String, SigningKey>,
    fetched_at: Instant,
}

/// Verifies bearer tokens of one issuer.
pub struct OidcVerifier {
    config: OidcConfig,
    http: reqwest::Client,
    jwks_uri: String,
    cache: RwLock<KeyCache>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.config.issuer)
            .field("audience", &self.config.audience)
            .field("jwks_uri", &self.jwks_uri)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// Discovers the issuer and fetches its signing keys.
    pub async fn discover(config: OidcConfig) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| AuthError::Provider(format!("HTTP client: {err}")))?;
        let url = format!("{}/.well-known/openid-configuration", config.issuer);
        let discovery: Discovery = fetch_json(&http, &url).await?;
        if discovery.issuer.trim_end_matches('/') != config.issuer {
            return Err(AuthError::Provider(format!(
                "{url} names issuer `{}`, not `{}`",
                discovery.issuer, config.issuer
            )));
        }
        let keys = fetch_keys(&http, &discovery.jwks_uri).await?;
        tracing::info!(issuer = %config.issuer, keys = keys.len(), "OIDC issuer discovered");
        Ok(Self {
            config,
            http,
            jwks_uri: discovery.jwks_uri,
            cache: RwLock::new(KeyCache {
                keys,
                fetched_at: Instant::now(),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Checks `token` and returns what it says about its bearer.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| AuthError::Malformed(err.to_string()))?;
        // Reading the issuer before the signature only chooses the error message: a token of
        // another issuer is refused either way, and saying so helps the caller fix it.
        let unverified: serde_json::Map<String, serde_json::Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token)
                .map_err(|err| AuthError::Malformed(err.to_string()))?;
        let issuer = unverified.get("iss").and_then(|iss| iss.as_str());
        if issuer.map(|iss| iss.trim_end_matches('/')) != Some(self.config.issuer.as_str()) {
            return Err(AuthError::WrongIssuer {
                found: issuer.unwrap_or("<none>").to_string(),
                expected: self.config.issuer.clone(),
            });
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("the token header has no key id (kid)".into()))?;

        let claims = {
            let cache = self.cache.read().await;
            match cache.keys.get(&kid) {
                Some(key) => Some(self.check(token, key)?),
                None => None,
            }
        };
        let claims = match claims {
            Some(claims) => claims,
            None => {
                self.refresh().await?;
                let cache = self.cache.read().await;
                let key = cache.keys.get(&kid).ok_or(AuthError::UnknownKey(kid))?;
                self.check(token, key)?
            }
        };
        let groups = match claims.other.get(&self.config.groups_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_string).ok_or_else(|| {
                        AuthError::Malformed(format!(
                            "claim `{}` holds a non-string group",
                            self.config.groups_claim
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(serde_json::Value::String(group)) => vec![group.clone()],
            Some(_) => {
                return Err(AuthError::Malformed(format!(
                    "claim `{}` is not a list of groups",
                    self.config.groups_claim
                )));
            }
        };
        Ok(VerifiedToken {
            subject: claims.sub,
            groups,
            expires_at: claims.exp,
        })
    }

    fn check(&self, token: &str, key: &SigningKey) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway.as_secs();
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|err| AuthError::from_jwt(err, &self.config))
    }

    /// Fetches the keys again unless they were fetched less than `refresh_interval` ago.
    async fn refresh(&self) -> Result<(), AuthError> {
        let mut cache = self.cache.write().await;
        if cache.fetched_at.elapsed() < self.config.refresh_interval {
            return Ok(());
        }
        let keys = fetch_keys(&self.http, &self.jwks_uri).await?;
        tracing::info!(issuer = %self.config.issuer, keys = keys.len(), "OIDC signing keys refreshed");
        *cache = KeyCache {
            keys,
            fetched_at: Instant::now(),
        };
        Ok(())
    }
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, AuthError> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|err| AuthError::Provider(format!("GET {url}: {err}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(AuthError::Provider(format!("GET {url}: HTTP {status}")));
    }
    response
        .json()
        .await
        .map_err(|err| AuthError::Provider(format!("GET {url}: {err}")))
}

/// The issuer's signing keys by key id. Keys without an id, or not for signatures, are skipped.
async fn fetch_keys(
    http: &reqwest::Client,
    jwks_uri: &str,
) -> Result<HashMap<String, SigningKey>, AuthError> {
    let set: JwkSet = fetch_json(http, jwks_uri).await?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        let Some(algorithm) = algorithm_of(jwk) else {
            tracing::warn!(%kid, "skipping a signing key of an unsupported type or algorithm");
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, SigningKey { key, algorithm });
            }
            Err(err) => tracing::warn!(%kid, error = %err, "skipping an unreadable signing key"),
        }
    }
    if keys.is_empty() {
        return Err(AuthError::Provider(format!(
            "{jwks_uri} publishes no usable signing key"
        )));
    }
    Ok(keys)
}

/// The algorithm a key is for: its `alg`, or the usual one of its key type when it has none.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm.and_then(|alg| match alg {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::PS384 => Some(Algorithm::PS384),
        KeyAlgorithm::PS512 => Some(Algorithm::PS512),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::ES384 => Some(Algorithm::ES384),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        _ => None,
    });
    if declared.is_some() {
        return declared;
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            jsonwebtoken::jwk::EllipticCurve::P256 => Some(Algorithm::ES256),
            jsonwebtoken::jwk::EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        _ => None,
    }
}
