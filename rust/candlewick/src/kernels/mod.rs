//! CPU kernels, and what this machine offers them: threads, SIMD paths, memory.
//!
//! Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS weights run our
//! own ggml-exact kernels in `quant`, F16 and BF16 GGUF weights our own float kernel there (all
//! read from the file's map, no converted copy); the other ggml types are refused by name (on a
//! GPU, candle's kernels run the types candle has). `simd_report` says which path each weight
//! type takes on this CPU.

pub mod attention;
pub mod math;
pub mod quant;
pub mod quantize;

use std::sync::OnceLock;

use crate::error::{Error, Result};

static THREADS: OnceLock<usize> = OnceLock::new();

/// An output pointer shared by the work items of one parallel kernel call, each of which writes
/// elements no other item writes.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: only used by kernels whose work items write disjoint output elements, and the buffer
// outlives the pool call that uses it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// FMA is there (x86): our scalar kernels are compiled a second time with it, so that `mul_add`
/// is one instruction rather than a software fallback; results are identical either way.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_fma() -> bool {
    static FMA: OnceLock<bool> = OnceLock::new();
    *FMA.get_or_init(|| std::arch::is_x86_feature_detected!("fma"))
}

/// Fix the number of compute threads for this process. candle sizes its worker pool once, on first
/// use, from CANDLE_NUM_THREADS / RAYON_NUM_THREADS, so this must run before the first forward pass;
/// asking again for the same number is fine, a different one is an error.
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::InvalidArgument(
            "threads must be a positive integer".into(),
        ));
    }
    let set = *THREADS.get_or_init(|| {
        // SAFETY (of the environment write): done once, before candle reads these variables.
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        n
    });
    if set != n {
        return Err(Error::InvalidArgument(format!(
            "threads={n} asked, but this process already runs with {set} threads (set once per process)"
        )));
    }
    Ok(())
}

/// Bytes of physical memory (Linux: MemTotal of /proc/meminfo), for checking sizes read from
/// files or asked for by users before allocating them. None where it cannot be read.
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Give the heap's free pages back to the system (glibc keeps freed memory in its arenas, so
/// the transient of a large build (a tokenizer's merge strings) would stay resident under the
/// weights loaded next). A no-op where the allocator is not glibc's.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim only returns free pages of glibc's arenas to the kernel
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The number of compute threads candle uses.
pub fn num_threads() -> usize {
    candle_core::utils::get_num_threads()
}

#[derive(Debug, Clone)]
pub struct SimdReport {
    pub cpu_features: Vec<&'static str>,
    /// (weight type, kernel path) pairs.
    pub paths: Vec<(&'static str, String)>,
}

pub fn simd_report() -> SimdReport {
    let mut feats = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! f {
            ($($name:tt),*) => { $( if std::arch::is_x86_feature_detected!($name) { feats.push($name); } )* };
        }
        f!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vnni",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            feats.push("neon");
        }
    }
    let mut paths = Vec::new();
    for t in [
        "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL",
        "IQ4_XS",
    ] {
        paths.push((
            t,
            format!(
                "candlewick kernel, bit-exact with ggml: {}",
                quant::simd_path()
            ),
        ));
    }
    for t in ["F16", "BF16"] {
        paths.push((
            t,
            format!(
                "candlewick kernel (GGUF weights, f32 activations): {}",
                quant::simd_path()
            ),
        ));
    }
    paths.push(("F32", "gemm crate, runtime-dispatched SIMD".to_string()));
    SimdReport {
        cpu_features: feats,
        paths,
    }
}
