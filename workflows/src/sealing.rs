//! Secrets at rest: the server's master key, and sealing the secret fields of entity specs
//! (kubeconfigs, passphrases, cloud keys: [`crate::redact::SECRET_FIELDS`]) before they are
//! stored, so that neither the event log nor the projections ever hold them in clear.
//!
//! A sealed value is `stowage-sealed:v1:<key id>:<base64 of nonce ‖ AES-256-GCM ciphertext>`.
//! The associated data binds it to its entity's stream and its field's name, so a sealed value
//! copied into another entity or field does not open. The key id (16 hex digits derived from
//! the key, revealing nothing of it) says which master key sealed a value: a server started with
//! another key says so instead of failing on garbage.
//!
//! Where the key comes from (a file, the environment) is the server's business; this module only
//! uses it.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::redact::try_for_each_secret;

/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "stowage-sealed:v1:";

/// Bytes of a master key.
pub const KEY_LEN: usize = 32;

const NONCE_LEN: usize = 12;

/// Why a secret could not be sealed or opened, or a key not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A key was not [`KEY_LEN`] bytes of base64.
    #[error("{origin} does not hold a master key: {reason}")]
    MalformedKey {
        /// Where the key came from (a file, a variable).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No randomness was available.
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    /// The value was sealed with another master key.
    #[error(
        "{field} of {stream} was sealed with master key {sealed_with}, but this server's key is \
         {current}: start the server with the master key the data was sealed with"
    )]
    WrongKey {
        /// The entity's stream.
        stream: String,
        /// The field.
        field: String,
        /// The id of the key that sealed it.
        sealed_with: String,
        /// The id of the key in use.
        current: String,
    },
    /// The value is not a sealed value this key opens: damaged, or moved from elsewhere.
    #[error("{field} of {stream} is sealed but does not open: {reason}")]
    Damaged {
        /// The entity's stream.
        stream: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// The server's master key.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// The key made of `bytes`.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let id = blake3::derive_key("stowage master key id v1", bytes);
        Self {
            cipher: Aes256Gcm::new(&(*bytes).into()),
            id: id[..8].iter().map(|byte| format!("{byte:02x}")).collect(),
        }
    }

    /// The key written as `text` (base64 of [`KEY_LEN`] bytes, surrounding blanks ignored);
    /// `origin` names where it came from in errors.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, SealError> {
        let malformed = |reason: String| SealError::MalformedKey {
            origin: origin.to_string(),
            reason,
        };
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|err| malformed(format!("not base64 ({err})")))?;
        let bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            malformed(format!(
                "{} bytes, where a key is {KEY_LEN} (base64 of {KEY_LEN} random bytes, e.g. \
                 `head -c {KEY_LEN} /dev/urandom | base64`)",
                bytes.len()
            ))
        })?;
        Ok(Self::from_bytes(&bytes))
    }

    /// A new random key and its base64 text (to be stored by the caller).
    pub fn generate() -> Result<(Self, String), SealError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|err| SealError::Random(err.to_string()))?;
        Ok((Self::from_bytes(&bytes), BASE64.encode(bytes)))
    }

    /// The key's id: names it in sealed values and errors without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(stream: &str, field: &str) -> Vec<u8> {
        format!("{stream}#{field}").into_bytes()
    }

    /// `secret` sealed for `field` of the entity whose stream is `stream`.
    pub fn seal(&self, stream: &str, field: &str, secret: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|err| SealError::Random(err.to_string()))?;
        let aad = Self::aad(stream, field);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Damaged {
                stream: stream.to_string(),
                field: field.to_string(),
                reason: "AES-GCM refused to seal it".to_string(),
            })?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            self.id,
            BASE64.encode(bytes)
        ))
    }

    /// Opens `sealed` (made by [`Self::seal`] for the same stream and field). A value that is not
    /// sealed at all is returned as it is: secrets stored before sealing existed.
    pub fn open(&self, stream: &str, field: &str, sealed: &str) -> Result<String, SealError> {
        let Some(rest) = sealed.strip_prefix(SEALED_PREFIX) else {
            return Ok(sealed.to_string());
        };
        let damaged = |reason: &str| SealError::Damaged {
            stream: stream.to_string(),
            field: field.to_string(),
            reason: reason.to_string(),
        };
        let (key_id, body) = rest.split_once(':').ok_or_else(|| damaged("no key id"))?;
        if key_id != self.id {
            return Err(SealError::WrongKey {
                stream: stream.to_string(),
                field: field.to_string(),
                sealed_with: key_id.to_string(),
                current: self.id.clone(),
            });
        }
        let bytes = BASE64.decode(body).map_err(|_| damaged("not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(damaged("too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| damaged("too short"))?;
        let aad = Self::aad(stream, field);
        let clear = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                damaged("authentication failed (changed, or sealed for another entity or field)")
            })?;
        String::from_utf8(clear).map_err(|_| damaged("not UTF-8 text"))
    }

    /// Seals every secret field of `spec`, an entity spec whose stream is `stream`. Values
    /// already sealed are kept as they are.
    pub fn seal_spec(&self, stream: &str, spec: &mut Value) -> Result<(), SealError> {
        try_for_each_secret(spec, &mut |field, text| {
            if !text.starts_with(SEALED_PREFIX) {
                *text = self.seal(stream, field, text)?;
            }
            Ok(())
        })
    }

    /// Opens every sealed secret field of `spec` (see [`Self::seal_spec`]).
    pub fn open_spec(&self, stream: &str, spec: &mut Value) -> Result<(), SealError> {
        try_for_each_secret(spec, &mut |field, text| {
            *text = self.open(stream, field, text)?;
            Ok(())
        })
    }
}

/// The ids of the keys that sealed the secrets of `spec`, and how many of its secrets are not
/// sealed: for checking at start-up that the server holds the right key.
pub fn sealing_of(spec: &mut Value) -> (Vec<String>, usize) {
    let mut key_ids = Vec::new();
    let mut clear = 0;
    let _ = try_for_each_secret(spec, &mut |_, text| {
        match text
            .strip_prefix(SEALED_PREFIX)
            .and_then(|rest| rest.split_once(':'))
        {
            Some((key_id, _)) => key_ids.push(key_id.to_string()),
            None if !text.is_empty() => clear += 1,
            None => {}
        }
        Ok::<(), std::convert::Infallible>(())
    });
    (key_ids, clear)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    const STREAM: &str = "entity/location/1";

    #[test]
    fn sealed_specs_hold_no_secret_and_open_to_the_original() {
        let (key, _) = MasterKey::generate().unwrap();
        let original = json!({
            "passphrase": "a passphrase marker",
            "location": {"kind": {"type": "s3", "bucket": "b", "secret_access_key": "key marker"}},
        });
        let mut spec = original.clone();
        key.seal_spec(STREAM, &mut spec).unwrap();
        let text = spec.to_string();
        assert!(!text.contains("marker"), "{text}");
        assert!(text.contains("\"bucket\":\"b\""), "{text}");
        assert_eq!(
            sealing_of(&mut spec.clone()),
            (vec![key.id().to_string(); 2], 0)
        );
        // Sealing again keeps what is sealed.
        let mut twice = spec.clone();
        key.seal_spec(STREAM, &mut twice).unwrap();
        assert_eq!(twice, spec);
        key.open_spec(STREAM, &mut spec).unwrap();
        assert_eq!(spec, original);
    }

    #[test]
    fn a_value_opens_only_with_its_key_for_its_entity_and_field() {
        let (key, text) = MasterKey::generate().unwrap();
        let same = MasterKey::from_base64(&format!(" {text}\n"), "test").unwrap();
        assert_eq!(same.id(), key.id());
        let sealed = key.seal(STREAM, "passphrase", "secret").unwrap();
        assert_eq!(same.open(STREAM, "passphrase", &sealed).unwrap(), "secret");

        let (other, _) = MasterKey::generate().unwrap();
        let err = other.open(STREAM, "passphrase", &sealed).unwrap_err();
        assert!(matches!(err, SealError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains(key.id()), "{err}");

        for (stream, field) in [("entity/location/2", "passphrase"), (STREAM, "sas")] {
            let err = key.open(stream, field, &sealed).unwrap_err();
            assert!(matches!(err, SealError::Damaged { .. }), "{err}");
        }
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let err = key
            .open(STREAM, "passphrase", &String::from_utf8(flipped).unwrap())
            .unwrap_err();
        assert!(matches!(err, SealError::Damaged { .. }), "{err}");

        // A secret stored before sealing existed reads as it is.
        assert_eq!(key.open(STREAM, "passphrase", "plain").unwrap(), "plain");
    }

    #[test]
    fn a_malformed_key_is_named_with_what_is_wrong() {
        let err = MasterKey::from_base64("not base64!", "STOWAGE_MASTER_KEY").unwrap_err();
        assert!(err.to_string().starts_with("STOWAGE_MASTER_KEY"), "{err}");
        let err = MasterKey::from_base64(&BASE64.encode([0u8; 16]), "key file").unwrap_err();
        assert!(err.to_string().contains("16 bytes"), "{err}");
    }
}
