//! Cutting file content into content-defined chunks (FastCDC, the 2020 variant, normalization
//! level 1, the crate's default gear table) through one buffer that a whole walk reuses.
//!
//! `fastcdc`'s own `StreamCDC` allocates a buffer per file and shifts what is left of it after
//! every chunk; here the buffer is allocated once, holds four largest chunks, and is compacted
//! only when less than one largest chunk is left in it, so each byte is copied about once
//! (into the chunk handed out). The cut points are the ones `StreamCDC` finds: each cut is
//! searched in at least `MAX_CHUNK` bytes, or in all that is left of the file.

use std::io::{self, Read};

use fastcdc::v2020::{self, Normalization};

/// FastCDC sizes: chunks of 512 KiB to 8 MiB, 1 MiB on average.
pub(crate) const MIN_CHUNK: usize = 512 * 1024;
pub(crate) const AVG_CHUNK: usize = 1024 * 1024;
pub(crate) const MAX_CHUNK: usize = 8 * 1024 * 1024;
/// The reusable buffer holds this many largest chunks.
const BUFFER_CHUNKS: usize = 4;

/// Cuts sources into chunks; one per reading thread.
pub(crate) struct Chunker {
    buffer: Vec<u8>,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    pub(crate) fn new() -> Self {
        let (mask_s, mask_l) = v2020::select_masks(AVG_CHUNK, Normalization::Level1);
        Self {
            buffer: vec![0; BUFFER_CHUNKS * MAX_CHUNK],
            mask_s,
            mask_l,
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
            if !eof && end - start < MAX_CHUNK {
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
            let (_, cut) = v2020::cut(
                &self.buffer[start..end],
                MIN_CHUNK,
                AVG_CHUNK,
                MAX_CHUNK,
                self.mask_s,
                self.mask_l,
                self.mask_s << 1,
                self.mask_l << 1,
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
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Deterministic bytes that are not all alike, so FastCDC finds cut points in them.
    fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
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
        let expected: Vec<usize> = v2020::FastCDC::new(&data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
            .map(|chunk| chunk.length)
            .collect();
        assert!(expected.len() > 20, "{} chunks", expected.len());

        let mut chunker = Chunker::new();
        for step in [usize::MAX, 1024 * 1024 + 17] {
            let mut lengths = Vec::new();
            let mut joined = Vec::new();
            let total = chunker
                .chunk(Trickle { data: &data, step }, |chunk| {
                    lengths.push(chunk.len());
                    joined.extend_from_slice(&chunk);
                    true
                })
                .unwrap();
            assert_eq!(lengths, expected, "read {step} bytes at a time");
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
    }

    #[test]
    fn emit_returning_false_stops_the_reading() {
        let data = pseudo_random(20 * 1024 * 1024, 7);
        let mut seen = 0;
        let total = Chunker::new()
            .chunk(&data[..], |_| {
                seen += 1;
                false
            })
            .unwrap();
        assert_eq!(seen, 1);
        assert!(total < data.len() as u64);
    }
}
