//! PyO3 bindings: conversions, GIL release, signal checks and exceptions only. No model logic
//! lives here: every verb delegates to the engine (rust/candlewick).

mod alloc;
mod config;
mod convert;
mod errors;
mod memory;
mod model;
mod sampling;
mod tokenizer;
mod train;

use pyo3::prelude::*;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    // Ctrl-C between the engine's steps; numpy's API looked up now, not lazily inside a call
    // (where a pending KeyboardInterrupt made the lookup panic)
    candlewick::interrupt::set_check(errors::interrupted);
    errors::quiet_known_panics();
    candlewick::interrupt::set_thread_bytes(alloc::thread_net_bytes);
    let _ = numpy::PyArray1::<f32>::zeros(m.py(), 0, false);
    m.add_class::<config::PyModelConfig>()?;
    m.add_class::<config::PyGenerationConfig>()?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<model::PyStream>()?;
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_class::<tokenizer::PyStreamDecoder>()?;
    m.add_function(wrap_pyfunction!(config::_model_config, m)?)?;
    m.add_function(wrap_pyfunction!(config::_generation_config, m)?)?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(model::model_from_config, m)?)?;
    m.add_function(wrap_pyfunction!(tokenizer::tokenizer_from_file, m)?)?;
    m.add_function(wrap_pyfunction!(model::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(model::simd_report, m)?)?;
    m.add_function(wrap_pyfunction!(model::profile_start, m)?)?;
    m.add_function(wrap_pyfunction!(model::profile_take, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::sample, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::sampling_stages, m)?)?;
    m.add_function(wrap_pyfunction!(memory::estimate_memory, m)?)?;
    m.add_function(wrap_pyfunction!(memory::assemble_parts, m)?)?;
    m.add_function(wrap_pyfunction!(memory::quantize_gguf, m)?)?;
    m.add_function(wrap_pyfunction!(memory::quantize_model, m)?)?;
    m.add_function(wrap_pyfunction!(memory::quantize_types, m)?)?;
    m.add_function(wrap_pyfunction!(train::objective_mlm, m)?)?;
    m.add_function(wrap_pyfunction!(train::objective_clm, m)?)?;
    m.add_function(wrap_pyfunction!(train::objective_span_corruption, m)?)?;
    m.add_function(wrap_pyfunction!(train::objective_pack, m)?)?;
    m.add_function(wrap_pyfunction!(train::t5_input_length, m)?)?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add_function(wrap_pyfunction!(train::model_loss, m)?)?;
    m.add_function(wrap_pyfunction!(train::model_gradients, m)?)?;
    m.add_function(wrap_pyfunction!(train::tokenize_corpus, m)?)?;
    m.add_function(wrap_pyfunction!(train::model_state_dict, m)?)?;
    m.add_function(wrap_pyfunction!(alloc::heap_bytes, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
