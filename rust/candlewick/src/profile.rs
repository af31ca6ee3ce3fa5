//! Where a forward pass's time goes: wall time per op and layer on the thread that runs the model,
//! and, inside the pooled kernels, how long threads waited for each other. Off by default; on,
//! between `start` and `take` (Python: `with candlewick.profile() as p`). Off, a span costs one
//! relaxed atomic load.
//!
//! Spans do not nest: each op the model runs is timed once, so the rows add up to the time of
//! the forward passes (the rest of a `generate` call, tokenizer and Python, is not in them).
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
/// The layer the model is running (usize::MAX: none, e.g. the embeddings or the head).
static LAYER: AtomicUsize = AtomicUsize::new(usize::MAX);

/// One row of the table: op, layer (None outside the blocks), total seconds, calls.
pub type Row = (&'static str, Option<usize>, f64, u64);

struct Table {
    rows: Vec<(&'static str, usize, u64, u64)>,
}

static TABLE: Mutex<Table> = Mutex::new(Table { rows: Vec::new() });

#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Start collecting (clears what an earlier run left).
pub fn start() {
    TABLE.lock().unwrap_or_else(|e| e.into_inner()).rows.clear();
    ON.store(true, Ordering::Relaxed);
}

/// Stop collecting and return the rows, in the order they first ran.
pub fn take() -> Vec<Row> {
    ON.store(false, Ordering::Relaxed);
    let rows = std::mem::take(&mut TABLE.lock().unwrap_or_else(|e| e.into_inner()).rows);
    rows.into_iter()
        .map(|(op, l, ns, n)| (op, (l != usize::MAX).then_some(l), ns as f64 * 1e-9, n))
        .collect()
}

/// Add `ns` nanoseconds and one call to `op` in the current layer.
pub fn add(op: &'static str, ns: u64) {
    let layer = LAYER.load(Ordering::Relaxed);
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match t.rows.iter_mut().find(|r| r.0 == op && r.1 == layer) {
        Some(r) => {
            r.2 += ns;
            r.3 += 1;
        }
        None => t.rows.push((op, layer, ns, 1)),
    }
}

/// The blocks set the layer their ops belong to; None after the last.
pub fn set_layer(l: Option<usize>) {
    if on() {
        LAYER.store(l.unwrap_or(usize::MAX), Ordering::Relaxed);
    }
}

/// Times the op until dropped (when profiling is on).
pub struct Span {
    op: &'static str,
    t0: Option<Instant>,
}

#[inline(always)]
pub fn span(op: &'static str) -> Span {
    Span {
        op,
        t0: on().then(Instant::now),
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(t0) = self.t0 {
            add(self.op, t0.elapsed().as_nanos() as u64);
        }
    }
}

/// For a pooled kernel: the time its threads spent waiting (threads x wall - their summed busy
/// time), given the wall time and the busy nanoseconds they added up.
pub fn pool_wait(op: &'static str, wall_ns: u64, busy_ns: u64, threads: usize) {
    add(
        op,
        (wall_ns * threads as u64).saturating_sub(busy_ns) / threads.max(1) as u64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_add_up_by_op_and_layer_only_while_on() {
        drop(span("before"));
        start();
        set_layer(Some(3));
        for _ in 0..2 {
            let _s = span("op");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        set_layer(None);
        drop(span("head"));
        // (other tests may run kernels on other threads meanwhile: only this test's ops count)
        let rows: Vec<Row> = take()
            .into_iter()
            .filter(|r| ["before", "op", "head", "after"].contains(&r.0))
            .collect();
        drop(span("after"));
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!((rows[0].0, rows[0].1, rows[0].3), ("op", Some(3), 2));
        assert!(rows[0].2 >= 0.004);
        assert_eq!((rows[1].0, rows[1].1, rows[1].3), ("head", None, 1));
        assert!(!take().iter().any(|r| r.0 == "after"));
    }
}
