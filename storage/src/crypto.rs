//! The repository's keys and its one sealing scheme: the key derived from the passphrase
//! (Argon2id), the master key it unlocks, AES-256-GCM sealing with the object's name as
//! associated data, and the keyed BLAKE3 hash that names chunks.

use aes_gcm::aead::{Aead, AeadInOut, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bytes of an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes of an AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;

/// The Argon2id cost of turning a passphrase into the key that unlocks the master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter of a second on a server core.
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// Derives the 32-byte key-encryption key from the passphrase and salt.
    pub(crate) fn derive(&self, passphrase: &str, salt: &[u8]) -> Result<[u8; 32]> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|err| Error::InvalidKdf(err.to_string()))?;
        let mut key = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), salt, &mut key)
            .map_err(|err| Error::InvalidKdf(err.to_string()))?;
        Ok(key)
    }
}

/// Fills a buffer with random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| Error::Random(err.to_string()))?;
    Ok(bytes)
}

/// Seals `plaintext` under `key` with `aad` as associated data: `nonce ‖ ciphertext ‖ tag`.
pub(crate) fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.resize(NONCE_LEN, 0);
    out.extend_from_slice(plaintext);
    seal_in_place(key, aad, &mut out, 0)?;
    Ok(out)
}

/// Seals the end of `buffer` where it stands: the plaintext is what follows
/// `nonce_at + NONCE_LEN`; a random nonce is written at `nonce_at` (over what the caller left
/// there), the plaintext is encrypted in place and the tag appended, so `buffer[nonce_at..]`
/// becomes what [`seal_with`] makes. What comes before `nonce_at` is left alone.
pub(crate) fn seal_in_place(
    key: &[u8; 32],
    aad: &[u8],
    buffer: &mut Vec<u8>,
    nonce_at: usize,
) -> Result<()> {
    let plain_at = nonce_at + NONCE_LEN;
    if buffer.len() < plain_at {
        return Err(Error::Random(format!(
            "a sealing buffer of {} bytes has no room for a nonce at {nonce_at}",
            buffer.len()
        )));
    }
    let nonce_bytes = random::<NONCE_LEN>()?;
    buffer[nonce_at..plain_at].copy_from_slice(&nonce_bytes);
    let tag = cipher(key)?
        .encrypt_inout_detached(
            &Nonce::from(nonce_bytes),
            aad,
            (&mut buffer[plain_at..]).into(),
        )
        .map_err(|_| Error::Random("AES-GCM refused to encrypt".into()))?;
    buffer.extend_from_slice(&tag);
    Ok(())
}

/// Opens what [`seal_with`] made; `None` when the tag does not match (wrong key, other
/// associated data, or changed bytes).
pub(crate) fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Option<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Ok(None);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(nonce);
    Ok(cipher(key)?
        .decrypt(&Nonce::from(nonce_bytes), Payload { msg: body, aad })
        .ok())
}

fn cipher(key: &[u8; 32]) -> Result<Aes256Gcm> {
    Aes256Gcm::new_from_slice(key).map_err(|_| Error::Random("AES-256 key of wrong length".into()))
}

/// The master key of a repository: one key seals every object, the other names chunks.
/// It is random, made once at `init`, and stored only sealed under the passphrase's key.
#[derive(Clone)]
pub(crate) struct MasterKey {
    /// The AES-256-GCM key of every object.
    pub(crate) data: [u8; 32],
    /// The BLAKE3 key of chunk ids, so ids reveal nothing about content to the store.
    pub(crate) id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub(crate) fn generate() -> Result<Self> {
        Ok(Self {
            data: random()?,
            id: random()?,
        })
    }

    /// The 64 bytes stored (sealed) in the repository's config.
    pub(crate) fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.data);
        out[32..].copy_from_slice(&self.id);
        out
    }

    /// The inverse of [`MasterKey::to_bytes`]; `None` for another length.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 64 {
            return None;
        }
        let mut data = [0u8; 32];
        let mut id = [0u8; 32];
        data.copy_from_slice(&bytes[..32]);
        id.copy_from_slice(&bytes[32..]);
        Some(Self { data, id })
    }

    /// The id of a chunk: its keyed BLAKE3 hash.
    pub(crate) fn chunk_id(&self, content: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.id, content)
    }

    /// The seed of a keyed gear table (see `chunker::Gear::Keyed`): 64 bits derived from the
    /// id key, never 0 (which would leave the table as it is).
    pub(crate) fn gear_seed(&self) -> u64 {
        let derived = blake3::derive_key("stowage 2026-12 chunker gear seed", &self.id);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&derived[..8]);
        u64::from_le_bytes(seed).max(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealing_round_trips_and_binds_key_and_name() {
        let key = random::<32>().unwrap();
        let sealed = seal_with(&key, b"chunks/ab", b"hello").unwrap();
        assert_eq!(
            open_with(&key, b"chunks/ab", &sealed).unwrap().unwrap(),
            b"hello"
        );
        assert!(open_with(&key, b"chunks/cd", &sealed).unwrap().is_none());
        let other = random::<32>().unwrap();
        assert!(open_with(&other, b"chunks/ab", &sealed).unwrap().is_none());
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN + 1] ^= 1;
        assert!(open_with(&key, b"chunks/ab", &flipped).unwrap().is_none());
    }

    #[test]
    fn the_kdf_depends_on_passphrase_and_salt() {
        let params = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let a = params.derive("one", b"saltsaltsaltsalt").unwrap();
        assert_eq!(a, params.derive("one", b"saltsaltsaltsalt").unwrap());
        assert_ne!(a, params.derive("two", b"saltsaltsaltsalt").unwrap());
        assert_ne!(a, params.derive("one", b"SALTSALTSALTSALT").unwrap());
    }
}
