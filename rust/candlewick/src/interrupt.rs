//! Ctrl-C for long native work. The bindings register how to ask whether the user interrupted
//! (Python's signal check); the engine asks between steps of anything that can run long (layers
//! of a forward pass, pieces of a prompt, candidates, batches, training steps) and stops with
//! `Error::Interrupted`. Without a registered check (Rust callers) nothing is ever interrupted.

use std::sync::OnceLock;

use crate::error::{Error, Result};

static CHECK: OnceLock<fn() -> bool> = OnceLock::new();

/// Register the check (once per process; later calls are ignored).
pub fn set_check(f: fn() -> bool) {
    let _ = CHECK.set(f);
}

static THREAD_BYTES: OnceLock<fn() -> isize> = OnceLock::new();

/// Register how to read the net bytes the calling thread has allocated (the bindings' counting
/// allocator); without it, budgets on memory are not enforced.
pub fn set_thread_bytes(f: fn() -> isize) {
    let _ = THREAD_BYTES.set(f);
}

/// Net bytes the calling thread has allocated, when the allocator counts them.
pub fn thread_bytes() -> Option<isize> {
    THREAD_BYTES.get().map(|f| f())
}

/// `Err(Interrupted)` when the registered check says the user interrupted. Cheap enough to call
/// per layer: the check itself rate-limits how often it asks Python.
pub fn check() -> Result<()> {
    match CHECK.get() {
        Some(f) if f() => Err(Error::Interrupted),
        _ => Ok(()),
    }
}
