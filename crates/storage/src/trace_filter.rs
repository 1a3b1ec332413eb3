//! A split-block Bloom filter over trace ids, one per Parquet file, kept in the catalog.

/// Membership filter: `may_contain` is false only for ids never inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceIdFilter {
    blocks: Vec<[u32; 8]>,
}

impl TraceIdFilter {
    pub fn may_contain(&self, _trace_id: &[u8; 16]) -> bool {
        todo!()
    }
}
