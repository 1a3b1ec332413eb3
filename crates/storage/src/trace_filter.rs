//! A split-block Bloom filter over trace ids, one per Parquet file, kept in the
//! catalog so a trace lookup can skip files without opening them.
//!
//! Layout (the same scheme as Parquet's SBBF): `n` blocks of eight 32-bit words.
//! A key's 64-bit xxh3 hash picks a block with its upper half and sets one bit in
//! each word of the block from its lower half and eight odd salts. Sized at 12 bits
//! per distinct trace id, the false-positive rate is about 0.5 %.
//!
//! Serialized form: `u32` little-endian block count, then the words little-endian.

use xxhash_rust::xxh3::xxh3_64;

const SALT: [u32; 8] = [
    0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31,
];
const BITS_PER_KEY: usize = 12;

/// Membership filter: `may_contain` is false only for ids never inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceIdFilter {
    blocks: Vec<[u32; 8]>,
}

impl TraceIdFilter {
    /// An empty filter sized for `distinct_ids` keys.
    pub fn with_capacity(distinct_ids: usize) -> Self {
        let blocks = (distinct_ids * BITS_PER_KEY).div_ceil(256).max(1);
        TraceIdFilter {
            blocks: vec![[0; 8]; blocks],
        }
    }

    fn locate(&self, trace_id: &[u8; 16]) -> (usize, u32) {
        let hash = xxh3_64(trace_id);
        let block = (((hash >> 32) * self.blocks.len() as u64) >> 32) as usize;
        (block, hash as u32)
    }

    pub fn insert(&mut self, trace_id: &[u8; 16]) {
        let (block, key) = self.locate(trace_id);
        let words = &mut self.blocks[block];
        for (word, salt) in words.iter_mut().zip(SALT) {
            *word |= 1 << (key.wrapping_mul(salt) >> 27);
        }
    }

    pub fn may_contain(&self, trace_id: &[u8; 16]) -> bool {
        let (block, key) = self.locate(trace_id);
        let words = &self.blocks[block];
        words
            .iter()
            .zip(SALT)
            .all(|(word, salt)| word & (1 << (key.wrapping_mul(salt) >> 27)) != 0)
    }

    pub fn size_bytes(&self) -> usize {
        self.blocks.len() * 32
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.size_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for block in &self.blocks {
            for word in block {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let count = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let body = bytes.get(4..)?;
        if count == 0 || body.len() != count * 32 {
            return None;
        }
        let blocks = body
            .chunks_exact(32)
            .map(|chunk| {
                let mut block = [0u32; 8];
                for (word, bytes) in block.iter_mut().zip(chunk.chunks_exact(4)) {
                    *word = u32::from_le_bytes(bytes.try_into().expect("4 bytes"));
                }
                block
            })
            .collect();
        Some(TraceIdFilter { blocks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&i.to_le_bytes());
        out[8..].copy_from_slice(&i.wrapping_mul(0x9e3779b97f4a7c15).to_le_bytes());
        out
    }

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut filter = TraceIdFilter::with_capacity(10_000);
        for i in 0..10_000 {
            filter.insert(&id(i));
        }
        assert!((0..10_000).all(|i| filter.may_contain(&id(i))));
        let false_positives = (10_000..110_000)
            .filter(|&i| filter.may_contain(&id(i)))
            .count();
        assert!(
            false_positives < 1_500,
            "{false_positives} false positives in 100k"
        );
    }

    #[test]
    fn serialization_round_trips_and_rejects_garbage() {
        let mut filter = TraceIdFilter::with_capacity(10);
        filter.insert(&id(7));
        let back = TraceIdFilter::from_bytes(&filter.to_bytes()).unwrap();
        assert_eq!(back, filter);
        assert!(back.may_contain(&id(7)));
        assert!(TraceIdFilter::from_bytes(&[1, 0, 0, 0, 1]).is_none());
        assert!(TraceIdFilter::from_bytes(&[]).is_none());
    }
}
