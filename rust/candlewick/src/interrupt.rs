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

/// How long work reports its progress: `(done, total)` in the work's own units (tokens,
/// texts, candidates, windows, bytes).
pub type Report = Box<dyn FnMut(u64, u64)>;

thread_local! {
    static PROGRESS: std::cell::RefCell<Option<Report>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with `report` receiving what `progress` is told on this thread (the bindings draw a
/// progress bar with it); the previous receiver is restored afterwards, even on a panic.
pub fn with_progress<T>(report: Option<Report>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Report>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            PROGRESS.with(|p| *p.borrow_mut() = prev);
        }
    }
    let _restore = Restore(PROGRESS.with(|p| p.replace(report)));
    f()
}

/// Tell the receiver, if any, that `done` of `total` units are done. Cheap without one.
pub fn progress(done: usize, total: usize) {
    PROGRESS.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if let Some(f) = p.as_mut() {
                f(done as u64, total as u64);
            }
        }
    });
}
