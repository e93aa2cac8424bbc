//! The envelope of every repository object except `stowage.repo`: a header naming the format
//! version and the object's kind, then the AES-256-GCM sealed body (compression byte, then the
//! body, zstd-compressed or stored). The header and the object's name are the associated data,
//! so an object copied under another name or kind does not open.

use std::cell::RefCell;
use std::io::Cursor;

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
    /// The header at the end of a pack file: the chunks it holds.
    PackHeader = 6,
    /// An object of the chunk index: packs and the chunks in each.
    ChunkIndex = 7,
}

/// How the body was stored inside the seal.
const STORED: u8 = 0;
const ZSTD: u8 = 1;

/// Compresses (when it helps) and seals `body` as object `name` of `kind`. The object is built
/// in one buffer: header, nonce, compression byte, then the body compressed straight into it
/// (by this thread's reused zstd context) and encrypted where it lies.
pub(crate) fn seal(key: &MasterKey, kind: Kind, name: &str, body: &[u8]) -> Result<Vec<u8>> {
    let header = header(kind);
    let body_at = HEADER_LEN + crypto::NONCE_LEN + 1;
    let mut out = Vec::with_capacity(
        body_at + zstd::zstd_safe::compress_bound(body.len()).max(body.len()) + crypto::TAG_LEN,
    );
    out.extend_from_slice(&header);
    out.resize(body_at, 0);
    let compressed = compress_onto(body, &mut out).map_err(|err| Error::Corrupt {
        object: name.into(),
        what: format!("zstd could not compress it: {err}"),
    })?;
    if compressed < body.len() {
        out[body_at - 1] = ZSTD;
    } else {
        out.truncate(body_at);
        out[body_at - 1] = STORED;
        out.extend_from_slice(body);
    }
    crypto::seal_in_place(&key.data, &aad(&header, name), &mut out, HEADER_LEN)?;
    Ok(out)
}

thread_local! {
    /// A zstd context per thread, made on first use: making one per object costs more than
    /// compressing a small object.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// The same for reading.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Appends `body` compressed (one zstd frame at [`ZSTD_LEVEL`]) to `out`; the bytes appended.
fn compress_onto(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match &mut *cell {
            Some(compressor) => compressor,
            None => cell.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        let start = out.len();
        let mut cursor = Cursor::new(std::mem::take(out));
        cursor.set_position(start as u64);
        let written = compressor.compress_to_buffer(body, &mut cursor);
        *out = cursor.into_inner();
        written
    })
}

/// The largest body a zstd frame may say it holds; a larger claim is refused rather than
/// allocated (the biggest object written is a chunk of 8 MiB or a frame of a few).
const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

/// Decompresses one zstd frame that records its content size (every frame [`seal`] writes does).
fn decompress(body: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let size =
        zstd::bulk::Decompressor::upper_bound(body).ok_or("the frame does not record its size")?;
    if size > MAX_DECOMPRESSED {
        return Err(format!(
            "the frame claims {size} bytes, more than any object holds"
        ));
    }
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match &mut *cell {
            Some(decompressor) => decompressor,
            None => cell.insert(zstd::bulk::Decompressor::new().map_err(|err| err.to_string())?),
        };
        decompressor
            .decompress(body, size)
            .map_err(|err| err.to_string())
    })
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
        Some((&ZSTD, body)) => decompress(body).map_err(|err| corrupt(format!("zstd: {err}"))),
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
