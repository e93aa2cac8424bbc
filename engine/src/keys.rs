//! The byte layout of the database: column family names and how keys are built.
//!
//! - `events`: stream key ‖ per-stream sequence (u64 big-endian) → encoded [`StoredEvent`].
//! - `global`: global sequence (u64 big-endian) → the event's key in `events`.
//! - `projections`: projection key ‖ key → value, see [`projection_key`].
//! - `meta`: the format marker.
//!
//! A stream key is the stream id's length (u16 big-endian) followed by its bytes, so that no
//! stream's keys are a prefix of another's and a stream's events sort by sequence.
//!
//! [`StoredEvent`]: crate::event::StoredEvent

/// Version of the on-disk layout written by this build. Bump it with an upgrade path.
pub const FORMAT_VERSION: u32 = 1;

/// Events, keyed by stream key ‖ per-stream sequence.
pub const CF_EVENTS: &str = "events";
/// The global order: global sequence → event key.
pub const CF_GLOBAL: &str = "global";
/// Current-state views derived from the log; dropped and rebuilt by a replay.
pub const CF_PROJECTIONS: &str = "projections";
/// Database-wide facts: the format marker.
pub const CF_META: &str = "meta";

/// Every column family the database has, in creation order.
pub const COLUMN_FAMILIES: [&str; 4] = [CF_EVENTS, CF_GLOBAL, CF_PROJECTIONS, CF_META];

/// Key in `meta` of the format marker (a big-endian `u32`).
pub const META_FORMAT_VERSION: &[u8] = b"format_version";

/// The longest stream id or projection name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// `len(name)` as u16 big-endian, then the name's bytes. Callers check the length first.
fn length_prefixed(name: &str, extra: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + name.len() + extra);
    // Invariant: names are checked against MAX_NAME_LEN (< u16::MAX) before keys are built.
    key.extend_from_slice(&(name.len().min(u16::MAX as usize) as u16).to_be_bytes());
    key.extend_from_slice(name.as_bytes());
    key
}

/// The prefix shared by every event of `stream`.
pub fn stream_prefix(stream: &str) -> Vec<u8> {
    length_prefixed(stream, 8)
}

/// The key of event `seq` of `stream`.
pub fn event_key(stream: &str, seq: u64) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Splits an event key into its stream id and sequence; `None` if it is not one.
pub fn split_event_key(key: &[u8]) -> Option<(String, u64)> {
    let len = u16::from_be_bytes(key.get(..2)?.try_into().ok()?) as usize;
    let name = key.get(2..2 + len)?;
    let seq = key.get(2 + len..)?;
    let seq = u64::from_be_bytes(seq.try_into().ok()?);
    Some((String::from_utf8(name.to_vec()).ok()?, seq))
}

/// The key of global position `seq`.
pub fn global_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Reads a global position back from its key.
pub fn split_global_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The key of `key` in projection `projection`.
pub fn projection_key(projection: &str, key: &[u8]) -> Vec<u8> {
    let mut full = length_prefixed(projection, key.len());
    full.extend_from_slice(key);
    full
}

/// The prefix of every key of projection `projection`.
pub fn projection_prefix(projection: &str) -> Vec<u8> {
    length_prefixed(projection, 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn event_keys_round_trip_and_sort_by_sequence_within_a_stream() {
        let key = event_key("backup/1", 42);
        assert_eq!(split_event_key(&key).unwrap(), ("backup/1".into(), 42));
        assert!(event_key("a", 9) < event_key("a", 10));
        assert!(event_key("a", 255) < event_key("a", 256));
        // "a" is not a prefix of "ab": the length comes first
        assert!(!event_key("ab", 1).starts_with(&stream_prefix("a")));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(split_event_key(&[0]).is_none());
        assert!(split_event_key(&[0, 5, b'a']).is_none());
        assert!(split_global_key(&[1, 2, 3]).is_none());
    }
}
