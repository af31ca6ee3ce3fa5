//! Checkpoint files: one reader for every kind (checkpoint.rs), the formats it reads (GGUF from
//! llama.cpp, safetensors from HF), headers validated before use, and one table of tensor types.
pub mod checkpoint;
pub mod gguf;
pub mod gguf_write;
pub mod safetensors;
pub mod types;

use std::path::Path;

use crate::error::{Error, Result};

/// Open `path` for reading only if it is a regular file (following symlinks): a FIFO would block
/// the open (or the read) forever, a device reads without end, and a directory is not a file.
/// Checked before opening and again on the open file. `what` names the expected file in errors.
pub fn open_regular(path: &Path, what: &str) -> Result<(std::fs::File, std::fs::Metadata)> {
    let io = |e| Error::Io {
        path: path.into(),
        source: e,
    };
    let kind = |m: &std::fs::Metadata| -> Result<()> {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        let not = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            return Ok(());
        };
        Err(Error::invalid_file(path, format!("is {not}, not {what}")))
    };
    kind(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    kind(&meta)?;
    Ok((file, meta))
}

/// An error writing `path`.
pub fn write_err(path: &Path, e: std::io::Error) -> Error {
    Error::Write {
        path: path.into(),
        source: e,
    }
}

/// Replace the folder `dir` as one step: `write` fills a fresh temporary folder beside it, whose
/// files are synced and which is then renamed into place; files of the old folder that `write`
/// did not make are carried over (hard links). If anything fails the temporary folder is removed
/// and the old folder is left as it was.
pub fn replace_dir(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| *n != "..")
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "cannot save to {}: not a folder name",
                dir.display()
            ))
        })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if dir.exists() && !dir.is_dir() {
        return Err(write_err(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file of that name is in the way",
            ),
        ));
    }
    std::fs::create_dir_all(&parent).map_err(|e| write_err(&parent, e))?;
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let tmp = parent.join(format!(".{name}.partial-{tag}"));
    let old = parent.join(format!(".{name}.old-{tag}"));
    let result = (|| -> Result<()> {
        std::fs::create_dir(&tmp).map_err(|e| write_err(&tmp, e))?;
        write(&tmp)?;
        if dir.is_dir() {
            carry_over(dir, &tmp)?;
        }
        sync_tree(&tmp)?;
        if dir.is_dir() {
            std::fs::rename(dir, &old).map_err(|e| write_err(dir, e))?;
            if let Err(e) = std::fs::rename(&tmp, dir) {
                let _ = std::fs::rename(&old, dir);
                return Err(write_err(dir, e));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, dir).map_err(|e| write_err(dir, e))?;
        }
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| write_err(&parent, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Hard-link (or copy) into `to` every file of `from` that `to` does not have, recursively.
fn carry_over(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).map_err(|e| Error::Io {
        path: from.into(),
        source: e,
    })? {
        let entry = entry.map_err(|e| Error::Io {
            path: from.into(),
            source: e,
        })?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let t = entry.file_type().map_err(|e| Error::Io {
            path: src.clone(),
            source: e,
        })?;
        if t.is_dir() {
            if !dst.exists() {
                std::fs::create_dir(&dst).map_err(|e| write_err(&dst, e))?;
            }
            if dst.is_dir() {
                carry_over(&src, &dst)?;
            }
        } else if t.is_file() && !dst.exists() {
            std::fs::hard_link(&src, &dst)
                .or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))
                .map_err(|e| write_err(&dst, e))?;
        }
    }
    Ok(())
}

/// fsync every file under `dir`, then the folders.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| write_err(dir, e))? {
        let p = entry.map_err(|e| write_err(dir, e))?.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else if p.is_file() {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| write_err(&p, e))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| write_err(dir, e))
}

/// The most bytes a JSON file beside a model may have (tokenizer.json files are a few MB; the
/// largest vocabularies about 30 MB).
pub const MAX_JSON: u64 = 512 << 20;

/// Read a whole regular file as text (config.json, tokenizer.json, ...), refusing FIFOs,
/// devices and files larger than `max` bytes before reading them.
pub fn read_text(path: &Path, what: &str, max: u64) -> Result<String> {
    use std::io::Read;
    let (file, meta) = open_regular(path, what)?;
    if meta.len() > max {
        return Err(Error::invalid_file(
            path,
            format!("is {} bytes, more than {max} for {what}", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
    String::from_utf8(bytes)
        .map_err(|e| Error::invalid_file(path, format!("{what} must be UTF-8 text: {e}")))
}
