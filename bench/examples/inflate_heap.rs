//! The heap one inflate state holds, for zlib-rs (through flate2, as wsguard
//! uses it) at 9, 12 and 15 window bits and for miniz_oxide, counted by a
//! global allocator: after construction, after inflating a 1 KiB chat
//! message, and what a `reset` allocates. One line per state.
//!
//! `cargo run --release -p wsguard-bench --example inflate_heap`

#[path = "../src/chat.rs"]
mod chat;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use flate2::{Decompress, FlushDecompress};
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush};

/// Bytes live, the most ever live, and allocations made.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as this method.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as this method.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: same contract as this method.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Relaxed);
        count_alloc(new_size);
        // SAFETY: same contract as this method.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count_alloc(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
    ALLOCS.fetch_add(1, Relaxed);
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What `f` left allocated, the peak above the start while it ran, and its
/// allocation count.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize, usize) {
    let (live0, allocs0) = (LIVE.load(Relaxed), ALLOCS.load(Relaxed));
    PEAK.store(live0, Relaxed);
    let out = f();
    let live = LIVE.load(Relaxed) - live0;
    let peak = PEAK.load(Relaxed) - live0;
    (out, live, peak, ALLOCS.load(Relaxed) - allocs0)
}

fn main() {
    let message = chat::message(7, 1 << 10);
    let mut payload = chat::deflate(&mut chat::compressor(), &message);
    payload.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut out = vec![0u8; 4 << 10];
    println!(
        "message: {} bytes, {} deflated (tail included)\n",
        message.len(),
        payload.len()
    );

    println!("state            inline  after-new  after-1KiB-msg   peak  allocs/reset");
    for bits in [9u8, 12, 15] {
        let (mut d, new, _, _) = measure(|| Decompress::new_with_window_bits(false, bits));
        let (n, used, peak, _) = measure(|| {
            d.decompress(&payload, &mut out, FlushDecompress::None)
                .expect("valid DEFLATE");
            d.total_out()
        });
        assert_eq!(n as usize, message.len());
        let (_, _, _, resets) = measure(|| d.reset(false));
        println!(
            "zlib-rs-w{bits:<2}     {:>6}  {new:>9}  {:>14}  {:>5}  {resets:>12}",
            size_of::<Decompress>(),
            new + used,
            new.max(peak),
        );
    }
    let (mut s, new, peak, _) = measure(|| InflateState::new_boxed(DataFormat::Raw));
    let (r, used, _, _) = measure(|| inflate(&mut s, &payload, &mut out, MZFlush::None));
    assert_eq!(r.bytes_written, message.len());
    let (_, _, _, resets) = measure(|| s.reset(DataFormat::Raw));
    println!(
        "miniz_oxide      {:>6}  {new:>9}  {:>14}  {peak:>5}  {resets:>12}",
        size_of::<Box<InflateState>>(),
        new + used,
    );
}
