//! The byte layout of the database: column family names and the keys of the `meta` family.

/// Version of the on-disk layout written by this build. Bump it with an upgrade path.
pub const FORMAT_VERSION: u32 = 1;

/// Events, keyed by stream id ‖ per-stream sequence (big-endian).
pub const CF_EVENTS: &str = "events";
/// The global order: global sequence (big-endian) → stream id ‖ per-stream sequence.
pub const CF_GLOBAL: &str = "global";
/// Current-state views derived from the log; dropped and rebuilt by a replay.
pub const CF_PROJECTIONS: &str = "projections";
/// Database-wide facts: the format marker, counters.
pub const CF_META: &str = "meta";

/// Every column family the database has, in creation order.
pub const COLUMN_FAMILIES: [&str; 4] = [CF_EVENTS, CF_GLOBAL, CF_PROJECTIONS, CF_META];

/// Key in `meta` of the format marker (a big-endian `u32`).
pub const META_FORMAT_VERSION: &[u8] = b"format_version";
