//! The envelope of every repository object except `stowage.repo`: a header naming the format
//! version and the object's kind, then the AES-256-GCM sealed body (compression byte, then the
//! body, zstd-compressed or stored). The header and the object's name are the associated data,
//! so an object copied under another name or kind does not open.

use crate::crypto::{self, MasterKey};
use crate::error::{Error, Result};

/// The magic bytes that open every sealed object; the fourth is the format version.
const MAGIC: [u8; 4] = *b"STW\x01";
/// Bytes of the header: magic and kind.
const HEADER_LEN: usize = 5;
/// zstd level for everything: fast, and already much smaller than the input on text.
const ZSTD_LEVEL: i32 = 3;

/// The kinds of sealed object, recorded in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A chunk of file content.
    Chunk = 1,
    /// A volume's file tree.
    Tree = 2,
    /// A backup's manifest.
    Manifest = 3,
    /// A frame of a resource pack: concatenated Kubernetes objects.
    ResourceFrame = 4,
    /// The index of a resource pack.
    ResourceIndex = 5,
}

/// How the body was stored inside the seal.
const STORED: u8 = 0;
const ZSTD: u8 = 1;

/// Compresses (when it helps) and seals `body` as object `name` of `kind`.
pub(crate) fn seal(key: &MasterKey, kind: Kind, name: &str, body: &[u8]) -> Result<Vec<u8>> {
    let compressed = zstd::bulk::compress(body, ZSTD_LEVEL).map_err(|err| Error::Corrupt {
        object: name.into(),
        what: format!("zstd could not compress it: {err}"),
    })?;
    let mut plain = Vec::with_capacity(1 + compressed.len().min(body.len()));
    if compressed.len() < body.len() {
        plain.push(ZSTD);
        plain.extend_from_slice(&compressed);
    } else {
        plain.push(STORED);
        plain.extend_from_slice(body);
    }
    let header = header(kind);
    let sealed = crypto::seal_with(&key.data, &aad(&header, name), &plain)?;
    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal`] made, checking the header, the kind, the seal and the compression;
/// every failure is [`Error::Corrupt`] naming the object.
pub(crate) fn open(key: &MasterKey, kind: Kind, name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |what: String| Error::Corrupt {
        object: name.into(),
        what,
    };
    if bytes.len() < HEADER_LEN + crypto::NONCE_LEN + crypto::TAG_LEN {
        return Err(corrupt(format!(
            "{} bytes is shorter than any sealed object (truncated?)",
            bytes.len()
        )));
    }
    let (head, sealed) = bytes.split_at(HEADER_LEN);
    if head[..3] != MAGIC[..3] {
        return Err(corrupt(
            "it does not start with Stowage's magic bytes".into(),
        ));
    }
    if head[3] != MAGIC[3] {
        return Err(Error::UnsupportedVersion {
            found: u32::from(head[3]),
            supported: u32::from(MAGIC[3]),
        });
    }
    if head[4] != kind as u8 {
        return Err(corrupt(format!(
            "its header says kind {}, expected {kind:?}",
            head[4]
        )));
    }
    let plain =
        crypto::open_with(&key.data, &aad(&header(kind), name), sealed)?.ok_or_else(|| {
            corrupt("its authentication tag does not match (changed or truncated bytes)".into())
        })?;
    match plain.split_first() {
        Some((&STORED, body)) => Ok(body.to_vec()),
        Some((&ZSTD, body)) => {
            zstd::stream::decode_all(body).map_err(|err| corrupt(format!("zstd: {err}")))
        }
        Some((other, _)) => Err(corrupt(format!("unknown compression {other}"))),
        None => Err(corrupt("empty body".into())),
    }
}

fn header(kind: Kind) -> [u8; HEADER_LEN] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], kind as u8]
}

fn aad(header: &[u8; HEADER_LEN], name: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn objects_round_trip_and_name_what_is_wrong() {
        let key = MasterKey::generate().unwrap();
        let body = b"apiVersion: v1\nkind: ConfigMap\n".repeat(50);
        let sealed = seal(&key, Kind::Tree, "backups/a/volumes/v", &body).unwrap();
        assert!(sealed.len() < body.len(), "repetitive text is compressed");
        assert_eq!(
            open(&key, Kind::Tree, "backups/a/volumes/v", &sealed).unwrap(),
            body
        );

        let err = open(&key, Kind::Tree, "backups/b/volumes/v", &sealed).unwrap_err();
        assert!(err.to_string().contains("authentication tag"), "{err}");
        let err = open(&key, Kind::Manifest, "backups/a/volumes/v", &sealed).unwrap_err();
        assert!(err.to_string().contains("expected Manifest"), "{err}");
        let err = open(&key, Kind::Tree, "x", &sealed[..10]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let err = open(&key, Kind::Tree, "backups/a/volumes/v", &flipped).unwrap_err();
        assert!(err.to_string().contains("`backups/a/volumes/v`"), "{err}");
    }
}
