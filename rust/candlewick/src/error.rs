//! One error type for the whole engine. User input never panics: every bad file, bad argument or
//! unsupported feature becomes one of these variants, with a message that names what was wrong.

use std::path::PathBuf;

/// The text of a caught panic's payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read at all.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A file or folder could not be written (full disk, no permission, a bad path).
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file exists but is not a valid model/tokenizer file (bad magic, truncated, corrupt header).
    #[error("invalid file {path}: {msg}")]
    InvalidFile { path: PathBuf, msg: String },

    /// The file is valid but describes something candlewick does not implement (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A caller-supplied argument is out of range or of the wrong shape.
    #[error("{0}")]
    InvalidArgument(String),

    /// A caller-supplied argument has the wrong type (Python: TypeError), or names no field.
    #[error("{0}")]
    WrongType(String),

    /// The prompt (plus requested tokens) does not fit in the model's context window.
    #[error("{0}")]
    ContextOverflow(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    #[error("model: {0}")]
    Model(String),

    /// The caller asked to stop (Ctrl-C) between steps of a long call.
    #[error("interrupted")]
    Interrupted,

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `bail!(InvalidArgument, "top_p must be in (0, 1], got {top_p}")`
#[macro_export]
macro_rules! bail {
    ($variant:ident, $($arg:tt)*) => {
        return Err($crate::error::Error::$variant(format!($($arg)*)))
    };
}

impl Error {
    pub fn invalid_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
