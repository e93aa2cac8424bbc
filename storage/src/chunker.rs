//! Cutting file content into content-defined chunks (FastCDC, the 2020 variant, normalization
//! level 1) through one buffer that a whole walk reuses, and how a repository's config says to
//! cut ([`Chunking`]: the sizes and the gear table).
//!
//! `fastcdc`'s own `StreamCDC` allocates a buffer per file and shifts what is left of it after
//! every chunk; here the buffer is allocated once, holds four largest chunks, and is compacted
//! only when less than one largest chunk is left in it, so each byte is copied about once
//! (into the chunk handed out). The cut points are the ones `StreamCDC` finds with the same
//! sizes and seed: each cut is searched in at least `max` bytes, or in all that is left of the
//! file.

use std::borrow::Cow;
use std::io::{self, Read};

use fastcdc::v2020::{self, Normalization};
use serde::{Deserialize, Serialize};

/// How a repository cuts file content: FastCDC's sizes, in bytes, and its gear table. Recorded
/// in the config when the repository is created; every backup into it cuts the same way, so the
/// same content always makes the same chunks there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunking {
    /// No chunk is smaller, except the last of a file.
    pub min: u32,
    /// The size chunks tend to.
    pub avg: u32,
    /// No chunk is larger.
    pub max: u32,
    /// The table the rolling hash adds per byte.
    pub gear: Gear,
}

/// The gear table of FastCDC's rolling hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gear {
    /// The `fastcdc` crate's table: where chunks end depends on the content alone.
    Fastcdc,
    /// That table with every entry XORed with a 64-bit seed derived from the repository's
    /// master key: where chunks end also depends on a secret, so whoever sees the lengths of
    /// stored chunks cannot match them against the chunks a known file would make.
    Keyed,
}

impl Chunking {
    /// How new repositories cut: 128 KiB to 2 MiB, 256 KiB on average, keyed gear. A change
    /// in a large file costs the chunks around it, so smaller chunks make smaller incremental
    /// backups of files rewritten in place (databases, disk images); the index and trees grow
    /// by about 100 bytes per chunk.
    pub const DEFAULT: Self = Self {
        min: 128 * 1024,
        avg: 256 * 1024,
        max: 2 * 1024 * 1024,
        gear: Gear::Keyed,
    };

    /// How repositories whose config says nothing cut (those created before the config
    /// recorded it): 512 KiB to 8 MiB, 1 MiB on average, the crate's gear.
    pub const UNRECORDED: Self = Self {
        min: 512 * 1024,
        avg: 1024 * 1024,
        max: 8 * 1024 * 1024,
        gear: Gear::Fastcdc,
    };

    /// Checks that FastCDC can cut to these sizes: even, in its bounds, and
    /// `min < avg < max`. The error says which size is wrong.
    pub fn check(&self) -> Result<(), String> {
        let bounds = [
            ("min", self.min, v2020::MINIMUM_MIN, v2020::MINIMUM_MAX),
            ("avg", self.avg, v2020::AVERAGE_MIN, v2020::AVERAGE_MAX),
            ("max", self.max, v2020::MAXIMUM_MIN, v2020::MAXIMUM_MAX),
        ];
        for (name, value, low, high) in bounds {
            let value = value as usize;
            if !(low..=high).contains(&value) || !value.is_multiple_of(2) {
                return Err(format!(
                    "chunk size {name} = {value} must be an even number of bytes from {low} to {high}"
                ));
            }
        }
        if !(self.min < self.avg && self.avg < self.max) {
            return Err(format!(
                "chunk sizes must grow from min to avg to max, not {} / {} / {}",
                self.min, self.avg, self.max
            ));
        }
        Ok(())
    }
}

/// The reusable buffer holds this many largest chunks.
const BUFFER_CHUNKS: usize = 4;

/// Cuts sources into chunks; one per reading thread.
pub(crate) struct Chunker {
    buffer: Vec<u8>,
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
}

impl Chunker {
    /// A chunker cutting to the sizes of `chunking`, which [`Chunking::check`] has accepted (a
    /// repository checks its config's when it opens), with the crate's gear table XORed with
    /// `seed` (0: the table as it is; the caller picks the seed by `chunking.gear`).
    pub(crate) fn new(chunking: Chunking, seed: u64) -> Self {
        let (min, avg, max) = (
            chunking.min as usize,
            chunking.avg as usize,
            chunking.max as usize,
        );
        let (mask_s, mask_l) = v2020::select_masks(avg, Normalization::Level1);
        let (gear, gear_ls) = v2020::get_gear_with_seed(seed);
        Self {
            buffer: vec![0; BUFFER_CHUNKS * max],
            min,
            avg,
            max,
            mask_s,
            mask_l,
            gear,
            gear_ls,
        }
    }

    /// Reads `source` to its end and gives each chunk, in order, to `emit`, which returns
    /// `false` to stop early. Returns the bytes read.
    pub(crate) fn chunk(
        &mut self,
        mut source: impl Read,
        mut emit: impl FnMut(Vec<u8>) -> bool,
    ) -> io::Result<u64> {
        let (mut start, mut end, mut eof) = (0usize, 0usize, false);
        let mut total = 0u64;
        loop {
            if !eof && end - start < self.max {
                self.buffer.copy_within(start..end, 0);
                end -= start;
                start = 0;
                while !eof && end < self.buffer.len() {
                    match source.read(&mut self.buffer[end..]) {
                        Ok(0) => eof = true,
                        Ok(read) => end += read,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            if start == end {
                return Ok(total);
            }
            let (_, cut) = v2020::cut_gear(
                &self.buffer[start..end],
                self.min,
                self.avg,
                self.max,
                self.mask_s,
                self.mask_l,
                self.mask_s << 1,
                self.mask_l << 1,
                &self.gear,
                &self.gear_ls,
            );
            // `cut` is never 0 on a non-empty slice; were it, the rest is taken as one chunk
            // so that the loop always advances.
            let length = if cut == 0 { end - start } else { cut };
            total += length as u64;
            let keep_going = emit(self.buffer[start..start + length].to_vec());
            start += length;
            if !keep_going {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Deterministic bytes that are not all alike, so FastCDC finds cut points in them.
    pub(crate) fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    /// A reader that gives at most `step` bytes per read, as pipes and sockets do.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let take = buf.len().min(self.step).min(self.data.len());
            buf[..take].copy_from_slice(&self.data[..take]);
            self.data = &self.data[take..];
            Ok(take)
        }
    }

    #[test]
    fn the_cuts_are_those_of_fastcdc_over_the_whole_content() {
        let data = pseudo_random(45 * 1024 * 1024 + 123, 0x9e37_79b9_7f4a_7c15);
        let mut seeded = Vec::new();
        for (sizes, seed) in [
            (Chunking::DEFAULT, 0),
            (Chunking::DEFAULT, 0x5eed_0fa7_e57a),
            (Chunking::UNRECORDED, 0),
        ] {
            let cuts = cuts_match_fastcdc(&data, sizes, seed);
            if sizes == Chunking::DEFAULT {
                seeded.push(cuts);
            }
        }
        assert_ne!(seeded[0], seeded[1], "a seed moves the cut points");
    }

    /// Checks the chunker's cuts against FastCDC's over the whole content; returns them.
    fn cuts_match_fastcdc(data: &[u8], sizes: Chunking, seed: u64) -> Vec<usize> {
        let expected: Vec<usize> = v2020::FastCDC::with_level_and_seed(
            data,
            sizes.min as usize,
            sizes.avg as usize,
            sizes.max as usize,
            Normalization::Level1,
            seed,
        )
        .map(|chunk| chunk.length)
        .collect();
        assert!(expected.len() > 20, "{} chunks", expected.len());

        let mut chunker = Chunker::new(sizes, seed);
        for step in [usize::MAX, 1024 * 1024 + 17] {
            let mut lengths = Vec::new();
            let mut joined = Vec::new();
            let total = chunker
                .chunk(Trickle { data, step }, |chunk| {
                    lengths.push(chunk.len());
                    joined.extend_from_slice(&chunk);
                    true
                })
                .unwrap();
            assert_eq!(
                lengths, expected,
                "{sizes:?}, seed {seed}, read {step} bytes at a time"
            );
            assert_eq!(total, data.len() as u64);
            assert!(joined == data, "the chunks put together are the content");
        }

        // The same chunker goes on with a small source, then an empty one.
        let mut small = Vec::new();
        chunker
            .chunk(&data[..1000], |chunk| {
                small.push(chunk);
                true
            })
            .unwrap();
        assert_eq!(small, vec![data[..1000].to_vec()]);
        let mut none = 0;
        assert_eq!(
            chunker
                .chunk(&b""[..], |_| {
                    none += 1;
                    true
                })
                .unwrap(),
            0
        );
        assert_eq!(none, 0);
        expected
    }

    #[test]
    fn emit_returning_false_stops_the_reading() {
        let data = pseudo_random(20 * 1024 * 1024, 7);
        let mut seen = 0;
        let total = Chunker::new(Chunking::DEFAULT, 0)
            .chunk(&data[..], |_| {
                seen += 1;
                false
            })
            .unwrap();
        assert_eq!(seen, 1);
        assert!(total < data.len() as u64);
    }

    #[test]
    fn sizes_fastcdc_cannot_cut_to_are_named() {
        assert_eq!(Chunking::DEFAULT.check(), Ok(()));
        assert_eq!(Chunking::UNRECORDED.check(), Ok(()));
        let odd = Chunking {
            avg: 256 * 1024 + 1,
            ..Chunking::DEFAULT
        };
        assert!(odd.check().unwrap_err().contains("avg = 262145"));
        let huge = Chunking {
            max: 64 * 1024 * 1024,
            ..Chunking::DEFAULT
        };
        assert!(huge.check().unwrap_err().contains("max = 67108864"));
        let upside_down = Chunking {
            min: 512 * 1024,
            ..Chunking::DEFAULT
        };
        assert!(upside_down.check().unwrap_err().contains("must grow"));
    }
}
