//! Engine errors -> Python exceptions. Arguments -> ValueError (TypeError for a wrong type);
//! bad files -> ModelFileError; missing files -> FileNotFoundError; features not built ->
//! UnsupportedError; Ctrl-C between steps -> KeyboardInterrupt.

use candlewick::Error;
use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    candlewick,
    CandlewickError,
    PyException,
    "Base class of candlewick's own errors."
);
pyo3::create_exception!(
    candlewick,
    ModelFileError,
    CandlewickError,
    "A model or tokenizer file is invalid, truncated or corrupt."
);
pyo3::create_exception!(
    candlewick,
    UnsupportedError,
    CandlewickError,
    "The file or option is valid but candlewick does not support it (yet)."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CandlewickError", py.get_type::<CandlewickError>())?;
    m.add("ModelFileError", py.get_type::<ModelFileError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    Ok(())
}

pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(msg)
        }
        Error::Io { .. } | Error::Write { .. } => PyOSError::new_err(msg),
        Error::InvalidFile { .. } => ModelFileError::new_err(msg),
        Error::Unsupported(_) => UnsupportedError::new_err(msg),
        Error::InvalidArgument(_) | Error::ContextOverflow(_) => PyValueError::new_err(msg),
        Error::WrongType(_) => PyTypeError::new_err(msg),
        Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
        Error::Template(_) => PyValueError::new_err(msg),
        Error::Tokenizer(_) | Error::Model(_) | Error::Candle(_) => CandlewickError::new_err(msg),
    }
}

/// Run engine work without the GIL, with every panic (ours or a dependency's) caught and turned
/// into a `CandlewickError` carrying its message: a PanicException derives from BaseException,
/// which `except Exception` does not catch, so none may reach Python.
pub fn detach<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> candlewick::Result<T> + Send,
) -> PyResult<T> {
    py.detach(move || guard(f)).py()
}

/// The panic hook, except for panics the engine turns into a clear error of its own (those of the
/// tokenizers crate and its regex engine): those print nothing, as any other handled error.
pub fn quiet_known_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = candlewick::error::panic_message(info.payload());
        // the engine contains every panic of the tokenizers crate (tokenizer::contain)
        let in_tokenizers = info
            .location()
            .is_some_and(|l| l.file().contains("/tokenizers-") || l.file().contains("/onig-"));
        let contained = in_tokenizers || msg.contains("retry-limit-in-match");
        if !contained {
            default(info);
        }
    }));
}

/// `f`, with a panic turned into an engine error.
pub fn guard<T>(f: impl FnOnce() -> candlewick::Result<T>) -> candlewick::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        // the engine contains the tokenizers crate's panics itself (tokenizer::contain); any
        // other is a bug of ours
        Err(payload) => Err(Error::Model(format!(
            "internal error (please report it): {}",
            candlewick::error::panic_message(payload.as_ref())
        ))),
    }
}

/// `?` on engine results inside bindings.
pub trait IntoPyResult<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for candlewick::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

impl<T> IntoPyResult<T> for PyResult<T> {
    fn py(self) -> PyResult<T> {
        self
    }
}

/// A Python int that must be >= 0, named in the error.
pub fn non_negative(name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} must be >= 0, got {v}")))
}

/// Whether Ctrl-C was pressed (Python's signal handlers run here): asked between the steps of a
/// long call that runs without the GIL. The GIL is taken at most every 50 ms, so a step never
/// waits on other Python threads for it.
pub fn interrupted() -> bool {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let due = LAST.with(|last| match last.get() {
        Some(t) if now.duration_since(t) < Duration::from_millis(50) => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    due && Python::attach(|py| py.check_signals().is_err())
}

/// `detach`, with the engine's progress told to `callback(done, total)` (a Python callable, the
/// progress bar's update): at most every 100 ms, and always when the work is done. An error the
/// callback raises is printed and otherwise ignored (a broken bar must not stop the work), but
/// for Ctrl-C: Python's handler may run inside the callback, and the KeyboardInterrupt it raises
/// there is re-armed for the engine's next check, so that the work still stops.
pub fn detach_progress<T: Send>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    f: impl FnOnce() -> candlewick::Result<T> + Send,
) -> PyResult<T> {
    let Some(cb) = callback else {
        return detach(py, f);
    };
    detach(py, move || {
        use std::time::{Duration, Instant};
        let mut last: Option<Instant> = None;
        let report: candlewick::interrupt::Report = Box::new(move |done, total| {
            let now = Instant::now();
            if done < total
                && last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
            {
                return;
            }
            last = Some(now);
            Python::attach(|py| {
                if let Err(e) = cb.call1(py, (done, total)) {
                    if e.is_instance_of::<PyKeyboardInterrupt>(py) {
                        // SAFETY: PyErr_SetInterrupt only flags a pending SIGINT; any thread may call it.
                        unsafe { pyo3::ffi::PyErr_SetInterrupt() };
                    } else {
                        e.print(py);
                    }
                }
            });
        });
        candlewick::interrupt::with_progress(Some(report), f)
    })
}
