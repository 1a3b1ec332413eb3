//! A compression bomb must not make `decompress` allocate much beyond its cap.
//!
//! This test binary counts the bytes each thread holds through a global
//! allocator, so it lives apart from the other tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use lighttrace_ingest::{IngestError, decompress};

struct CountingAllocator;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    // `try_with` because the allocator also runs while thread locals are torn down.
    let _ = HELD.try_with(|held| {
        let now = held.get() + size;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_dealloc(size: usize) {
    let _ = HELD.try_with(|held| held.set(held.get().saturating_sub(size)));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_dealloc(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Count a realloc as allocate-then-free: both blocks may exist at once.
        note_alloc(new_size);
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        note_dealloc(layout.size());
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Peak bytes held by this thread while `f` runs, above what it held before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, peak - before)
}

fn gzip_of_zeros(total: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    let mut written = 0;
    while written < total {
        let n = zeros.len().min(total - written);
        encoder.write_all(&zeros[..n]).unwrap();
        written += n;
    }
    encoder.finish().unwrap()
}

#[test]
fn gzip_bomb_of_100_mib_with_a_1_mib_cap_costs_about_the_cap() {
    const CAP: usize = 1 << 20;
    let bomb = gzip_of_zeros(100 << 20);
    let (result, peak) = peak_during(|| decompress(&bomb, Some("gzip"), CAP).map(|b| b.len()));
    assert!(
        matches!(result, Err(IngestError::TooLarge { limit: CAP })),
        "{result:?}"
    );
    // The output buffer (at most CAP bytes, plus the half-size buffer it grew
    // from while being copied) and the inflater's state (~100 KiB).
    assert!(
        peak < CAP * 2,
        "peak {peak} bytes while inflating with a cap of {CAP}"
    );
}

#[test]
fn a_body_just_under_the_cap_is_inflated_within_the_cap() {
    const CAP: usize = 3 << 20;
    let body = gzip_of_zeros(CAP);
    let (result, peak) = peak_during(|| decompress(&body, Some("gzip"), CAP).map(|b| b.len()));
    assert_eq!(result.unwrap(), CAP);
    assert!(peak < CAP * 2, "peak {peak} bytes for a {CAP}-byte body");
}
