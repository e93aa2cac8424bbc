//! Authentication against the real OIDC provider: what a verified token says, and each way a
//! token can be bad, refused with its own reason. Then the audit stream over real HTTP: no token,
//! the bootstrap token, and users who see only what they may.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use stowage::auth::{AuthError, Authenticator, OidcConfig, OidcVerifier, Role, RoleMapping};
use stowage_tests::services;

fn config(issuer: &str, audience: &str) -> OidcConfig {
    let mut config = OidcConfig::new(issuer, audience);
    // No skew allowance, and refetch keys whenever a token names an unknown one: tests need the
    // edges exact and cannot wait.
    config.leeway = Duration::ZERO;
    config.refresh_interval = Duration::ZERO;
    config
}

/// `token` with one claim of its payload changed, the signature kept.
fn with_claim(token: &str, claim: &str, value: serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload[claim] = value;
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn verified_tokens_carry_subject_and_groups() {
    let oidc = services::oidc();
    let verifier = OidcVerifier::discover(config(&oidc.issuer, &oidc.audience))
        .await
        .unwrap();
    let alice = oidc.token(oidc.user("alice"), None).await.unwrap();
    let verified = verifier.verify(&alice).await.unwrap();
    assert_eq!(verified.subject, "alice");
    assert_eq!(verified.groups, ["platform", "backup-admins"]);

    // A token without the groups claim is a caller in no group, not an error.
    let dave = oidc.token(oidc.user("dave"), None).await.unwrap();
    let verified = verifier.verify(&dave).await.unwrap();
    assert_eq!(verified.subject, "dave");
    assert!(verified.groups.is_empty());

    // The groups claim is configurable: with another name, alice's groups are not read.
    let mut renamed = config(&oidc.issuer, &oidc.audience);
    renamed.groups_claim = "roles".into();
    let verifier = OidcVerifier::discover(renamed).await.unwrap();
    assert!(verifier.verify(&alice).await.unwrap().groups.is_empty());
}

#[tokio::test]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let oidc = services::oidc();
    let verifier = OidcVerifier::discover(config(&oidc.issuer, &oidc.audience))
        .await
        .unwrap();
    let bob = oidc.user("bob");

    let foreign_audience = oidc
        .token(bob, Some(&oidc.other_audiences[0]))
        .await
        .unwrap();
    let err = verifier.verify(&foreign_audience).await.unwrap_err();
    assert!(matches!(err, AuthError::WrongAudience { .. }), "{err}");
    assert!(err.to_string().contains(&oidc.audience), "{err}");

    let other_issuer = oidc
        .token_from(&oidc.other_issuer, bob, None)
        .await
        .unwrap();
    let err = verifier.verify(&other_issuer).await.unwrap_err();
    assert!(
        matches!(&err, AuthError::WrongIssuer { found, .. } if *found == oidc.other_issuer),
        "{err}"
    );

    // A claim changed after signing: bob claims to be alice, with alice's groups.
    let token = oidc.token(bob, None).await.unwrap();
    let forged = with_claim(&token, "sub", "alice".into());
    let err = verifier.verify(&forged).await.unwrap_err();
    assert!(matches!(err, AuthError::BadSignature), "{err}");
    let forged = with_claim(&token, "groups", serde_json::json!(["backup-admins"]));
    assert!(matches!(
        verifier.verify(&forged).await.unwrap_err(),
        AuthError::BadSignature
    ));

    let err = verifier.verify("not-a-jwt").await.unwrap_err();
    assert!(matches!(err, AuthError::Malformed(_)), "{err}");

    // erin's tokens live one second.
    let erin = oidc
        .token(oidc.user("erin-short-lived"), None)
        .await
        .unwrap();
    verifier.verify(&erin).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = verifier.verify(&erin).await.unwrap_err();
    assert!(matches!(err, AuthError::Expired), "{err}");

    // frank's tokens are not valid for another hour: refused until then, even with the
    // default clock leeway.
    let frank = oidc.token(oidc.user("frank-not-yet"), None).await.unwrap();
    let err = verifier.verify(&frank).await.unwrap_err();
    assert!(matches!(err, AuthError::NotYetValid), "{err}");
    assert!(err.to_string().contains("not valid yet"), "{err}");
    let lenient = OidcVerifier::discover(OidcConfig::new(&oidc.issuer, &oidc.audience))
        .await
        .unwrap();
    assert!(matches!(
        lenient.verify(&frank).await.unwrap_err(),
        AuthError::NotYetValid
    ));
    // Everything else about the token is good: with two hours of leeway it is accepted.
    let mut skewed = OidcConfig::new(&oidc.issuer, &oidc.audience);
    skewed.leeway = Duration::from_secs(7200);
    let skewed = OidcVerifier::discover(skewed).await.unwrap();
    assert_eq!(
        skewed.verify(&frank).await.unwrap().subject,
        "frank-not-yet"
    );
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_when_a_token_names_it() {
    let oidc = services::oidc();
    // The other issuer is the one rotated, so that tests using the main one are not disturbed.
    let issuer = oidc.other_issuer.clone();
    let verifier = OidcVerifier::discover(config(&issuer, &oidc.audience))
        .await
        .unwrap();
    let carol = oidc.user("carol");
    let before = oidc.token_from(&issuer, carol, None).await.unwrap();
    verifier.verify(&before).await.unwrap();

    let new_kid = oidc.rotate_keys(&issuer).await.unwrap();
    let after = oidc.token_from(&issuer, carol, None).await.unwrap();
    let header = jsonwebtoken::decode_header(&after).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    let verified = verifier.verify(&after).await.unwrap();
    assert_eq!(verified.subject, "carol");
    // The previous key is still published, so tokens signed before the rotation stay valid.
    verifier.verify(&before).await.unwrap();

    // A key id the issuer does not publish is named.
    let mut header = jsonwebtoken::decode_header(&after).unwrap();
    header.kid = Some("no-such-key".into());
    let parts: Vec<&str> = after.split('.').collect();
    let renamed = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        parts[1],
        parts[2]
    );
    let err = verifier.verify(&renamed).await.unwrap_err();
    assert!(
        matches!(&err, AuthError::UnknownKey(kid) if kid == "no-such-key"),
        "{err}"
    );
}

#[tokio::test]
async fn roles_come_from_groups_and_the_bootstrap_token_is_admin() {
    let oidc = services::oidc();
    let verifier = OidcVerifier::discover(config(&oidc.issuer, &oidc.audience))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stowage::auth::Bootstrap::Created(bootstrap, bootstrap_token) =
        stowage::auth::BootstrapToken::load_or_create(&dir.path().join("token")).unwrap()
    else {
        panic!("a new token file");
    };
    let auth = Authenticator::new(
        Some(bootstrap),
        Some(verifier),
        RoleMapping {
            admin_groups: vec!["backup-admins".into()],
            operator_groups: vec!["platform".into()],
        },
    );
    let bearer = |token: &str| format!("Bearer {token}");
    let role = |name: &'static str| {
        let auth = auth.clone();
        let oidc = oidc.clone();
        async move {
            let token = oidc.token(oidc.user(name), None).await.unwrap();
            auth.authenticate(Some(&bearer(&token))).await.unwrap().role
        }
    };
    assert_eq!(role("alice").await, Role::Admin);
    assert_eq!(role("bob").await, Role::Operator);
    assert_eq!(role("carol").await, Role::Viewer);
    assert_eq!(role("dave").await, Role::Viewer);
    let admin = auth
        .authenticate(Some(&bearer(&bootstrap_token)))
        .await
        .unwrap();
    assert!(admin.is_admin());
    assert_eq!(admin.subject, stowage::auth::BOOTSTRAP_SUBJECT);
    assert!(matches!(
        auth.authenticate(None).await.unwrap_err(),
        AuthError::Missing
    ));
    assert!(matches!(
        auth.authenticate(Some("Basic abc")).await.unwrap_err(),
        AuthError::Malformed(_)
    ));
}
