//! The OIDC provider issues signed JWT access tokens that verify against its published JWKS, with
//! the groups claim of each test user.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use stowage_tests::services;

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

async fn jwks(issuer: &str) -> (Discovery, JwkSet) {
    let discovery: Discovery = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: JwkSet = reqwest::get(&discovery.jwks_uri)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (discovery, keys)
}

fn verify(
    token: &str,
    keys: &JwkSet,
    issuer: &str,
    audience: &str,
) -> jsonwebtoken::errors::Result<Claims> {
    let header = decode_header(token)?;
    let kid = header.kid.as_deref().unwrap_or_default();
    let jwk = keys
        .find(kid)
        .unwrap_or_else(|| panic!("no key `{kid}` in the provider's JWKS"));
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    decode::<Claims>(token, &DecodingKey::from_jwk(jwk)?, &validation).map(|data| data.claims)
}

#[tokio::test]
async fn tokens_verify_against_the_jwks_and_carry_groups() {
    let oidc = services::oidc();
    let (discovery, keys) = jwks(&oidc.issuer).await;
    assert_eq!(discovery.issuer, oidc.issuer);

    let alice = oidc.user("alice");
    let token = oidc.token(alice, None).await.unwrap();
    let claims = verify(&token, &keys, &oidc.issuer, &oidc.audience).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.groups, alice.groups);
    assert!(claims.groups.is_some());

    let dave = oidc.user("dave");
    let token = oidc.token(dave, None).await.unwrap();
    let claims = verify(&token, &keys, &oidc.issuer, &oidc.audience).unwrap();
    assert_eq!(claims.sub, "dave");
    assert_eq!(claims.groups, None, "dave's tokens carry no groups claim");
}

#[tokio::test]
async fn tampered_and_foreign_tokens_are_rejected() {
    let oidc = services::oidc();
    let (_, keys) = jwks(&oidc.issuer).await;
    let bob = oidc.user("bob");

    let token = oidc.token(bob, None).await.unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let last = parts[2].pop().unwrap();
    parts[2].push(if last == 'A' { 'B' } else { 'A' });
    let tampered = parts.join(".");
    assert!(verify(&tampered, &keys, &oidc.issuer, &oidc.audience).is_err());

    let other = &oidc.other_audiences[0];
    let foreign = oidc.token(bob, Some(other)).await.unwrap();
    let err = verify(&foreign, &keys, &oidc.issuer, &oidc.audience).unwrap_err();
    assert_eq!(
        err.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAudience
    );
    assert!(verify(&foreign, &keys, &oidc.issuer, other).is_ok());
}
