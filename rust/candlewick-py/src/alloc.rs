//! The process's heap, counted: bytes allocated now and the high-water mark since the last reset,
//! so memory estimates are checked against what a run really allocates (not RSS, which the
//! allocator and the interpreter blur). One relaxed atomic add per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Net bytes this thread allocated (minus what it freed): what bounds a chat template's render.
    static THREAD_NET: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn thread_add(n: isize) {
    let _ = THREAD_NET.try_with(|c| c.set(c.get().wrapping_add(n)));
}

/// Net bytes the calling thread has allocated so far (differences of two readings matter).
pub fn thread_net_bytes() -> isize {
    THREAD_NET.try_with(|c| c.get()).unwrap_or(0)
}

fn grew(n: usize) {
    let now = NOW.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
    thread_add(n as isize);
}

fn shrank(n: usize) {
    NOW.fetch_sub(n, Ordering::Relaxed);
    thread_add(-(n as isize));
}

// SAFETY: every call forwards to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        shrank(l.size());
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                grew(new - l.size());
            } else {
                shrank(l.size() - new);
            }
        }
        q
    }
}

/// (bytes the engine holds now, the most it held since the last reset); reset=True starts a new
/// high-water mark from now.
#[pyo3::pyfunction]
#[pyo3(signature = (reset=false))]
pub fn heap_bytes(reset: bool) -> (usize, usize) {
    let now = NOW.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    if reset {
        PEAK.store(now, Ordering::Relaxed);
    }
    (now, peak)
}
