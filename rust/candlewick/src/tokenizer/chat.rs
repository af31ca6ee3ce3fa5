//! Chat templates: the Jinja text a model ships (`tokenizer.chat_template` in GGUF,
//! `chat_template` in tokenizer_config.json), rendered with minijinja the way HF transformers
//! renders it: trim_blocks and lstrip_blocks on, `raise_exception`, `strftime_now`, Python string
//! methods (`.strip()`, `.startswith()`, ...) through minijinja-contrib's pycompat.
//!
//! A template is code from a model file. It renders in minijinja's sandbox (no file access: no
//! loader is set, so `include`/`import` find nothing; no attribute walking: Python internals such
//! as `__class__` do not exist in minijinja's values), under limits: a time bound, a memory budget
//! for what the rendering thread allocates, bounded concatenation (the vendored minijinja's
//! patch), an output size, and Ctrl-C, all checked before every instruction.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The longest a render may take.
pub const MAX_RENDER_TIME: Duration = Duration::from_secs(10);
/// Bytes a render may hold beyond its messages (8 times their JSON size is added).
pub const RENDER_MEMORY: usize = 256 << 20;
/// The longest prompt a template may write.
pub const MAX_RENDER_OUTPUT: usize = 64 << 20;
/// Instructions a render may run (a time bound where no clock is read).
const FUEL: u64 = 200_000_000;

const INTERRUPTED: &str = "candlewick: interrupted";

thread_local! {
    /// (allocator reading at the start, byte budget, deadline) of the render on this thread.
    static LIMITS: Cell<Option<(isize, isize, Instant)>> = const { Cell::new(None) };
}

/// minijinja's per-instruction check (see third_party/minijinja/PATCHES.md).
fn resource_check() -> std::result::Result<(), String> {
    let Some((start, budget, deadline)) = LIMITS.with(|l| l.get()) else {
        return Ok(());
    };
    if let Some(now) = crate::interrupt::thread_bytes() {
        if now.wrapping_sub(start) > budget {
            return Err(format!(
                "the template used more than {} MB of memory",
                budget >> 20
            ));
        }
    }
    if Instant::now() > deadline {
        return Err(format!(
            "the template ran longer than {} s",
            MAX_RENDER_TIME.as_secs()
        ));
    }
    if crate::interrupt::check().is_err() {
        return Err(INTERRUPTED.into());
    }
    Ok(())
}

/// The largest string one filter call may build.
const MAX_FILTER_OUTPUT: usize = 100_000_000;

fn too_big(name: &str, what: String) -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!("{name}: {what}"),
    )
}

/// Refuse a filter call whose output would pass `MAX_FILTER_OUTPUT`, computed from its
/// arguments before the filter runs (one filter call is one instruction: the per-instruction
/// memory check would see its allocation only after the fact). `args[0]` is the filtered value.
fn check_size(name: &str, args: &[minijinja::Value]) -> std::result::Result<(), minijinja::Error> {
    let int = |i: usize| args.get(i).and_then(|v| i64::try_from(v.clone()).ok());
    let text_len = |v: &minijinja::Value| {
        v.as_str()
            .map(str::len)
            .unwrap_or_else(|| v.to_string().len())
    };
    let limit = MAX_FILTER_OUTPUT;
    match name {
        "replace" => {
            let (Some(s), Some(old), Some(new)) = (args.first(), args.get(1), args.get(2)) else {
                return Ok(());
            };
            let (s, old, new) = (s.to_string(), old.to_string(), new.to_string());
            let mut n = if old.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(old.as_str()).count()
            };
            if let Some(c) = int(3).filter(|&c| c >= 0) {
                n = n.min(c as usize);
            }
            let out = s.len() as u128 + n as u128 * new.len() as u128;
            if out > limit as u128 {
                return Err(too_big(name, format!("the result would be {out} bytes")));
            }
        }
        "join" => {
            let Some(seq) = args.first() else {
                return Ok(());
            };
            let sep = args
                .get(1)
                .filter(|v| v.as_str().is_some())
                .map(text_len)
                .unwrap_or(0);
            let mut total = 0usize;
            if let Ok(items) = seq.try_iter() {
                for (i, item) in items.enumerate() {
                    total = total
                        .saturating_add(text_len(&item))
                        .saturating_add(if i > 0 { sep } else { 0 });
                    if total > limit {
                        return Err(too_big(
                            name,
                            format!("the result would be more than {limit} bytes"),
                        ));
                    }
                }
            }
        }
        "indent" => {
            let s = args.first().map(text_len).unwrap_or(0);
            let width = int(1).unwrap_or(4).max(0) as u128;
            let lines = args
                .first()
                .map(|v| v.to_string().lines().count() + 1)
                .unwrap_or(1) as u128;
            if s as u128 + width * lines > limit as u128 {
                return Err(too_big(
                    name,
                    format!("width {width} over {lines} lines is too large"),
                ));
            }
        }
        "format" => {
            // printf-style and {}-style widths and precisions: no number in the format string
            // may ask for more than a megabyte of padding
            let f = args.first().map(|v| v.to_string()).unwrap_or_default();
            let mut run = 0u64;
            for c in f.chars().chain(std::iter::once(' ')) {
                match c.to_digit(10) {
                    Some(d) => run = run.saturating_mul(10).saturating_add(d as u64),
                    None => {
                        if run > 1_000_000 {
                            return Err(too_big(name, format!("a width of {run} is too large")));
                        }
                        run = 0;
                    }
                }
            }
        }
        "tojson" | "batch" | "slice" => {
            for v in args.iter().skip(1) {
                if let Ok(n) = i64::try_from(v.clone()) {
                    if n > 1_000_000 || (name == "tojson" && n > 64) {
                        return Err(too_big(name, format!("argument {n} is too large")));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Clears the render limits of this thread when a render ends (however it ends).
struct LimitsGuard;
impl Drop for LimitsGuard {
    fn drop(&mut self) {
        LIMITS.with(|l| l.set(None));
    }
}

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
}

fn raise_exception(msg: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        msg,
    ))
}

fn strftime_now(_fmt: String) -> String {
    // Templates use this to print today's date in a system prompt. We keep rendering
    // deterministic (the same prompt gives the same tokens), so the date is not injected.
    String::new()
}

impl ChatTemplate {
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let t = Self {
            source: source.into(),
        };
        // Compile once now so a broken template is reported at load time.
        t.env()?;
        Ok(t)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn env(&self) -> Result<minijinja::Environment<'static>> {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(100);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(|state, value, method, args| {
            // the Python string methods that can build a large string in one step
            if value.as_str().is_some() && matches!(method, "replace" | "join" | "format") {
                let mut all = vec![value.clone()];
                all.extend_from_slice(args);
                let as_filter = if method == "join" {
                    // "sep".join(items) builds what items|join("sep") does
                    vec![args.first().cloned().unwrap_or_default(), value.clone()]
                } else {
                    all
                };
                check_size(method, &as_filter)?;
            }
            minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
        });
        use minijinja::{filters as f, Value as V};
        let guarded = [
            ("replace", V::from_function(f::replace)),
            ("join", V::from_function(f::join)),
            ("indent", V::from_function(f::indent)),
            ("format", V::from_function(f::format)),
            ("tojson", V::from_function(f::tojson)),
            ("batch", V::from_function(f::batch)),
            ("slice", V::from_function(f::slice)),
        ];
        for (name, builtin) in guarded {
            env.add_filter(
                name,
                move |state: &minijinja::State, args: minijinja::value::Rest<minijinja::Value>| {
                    check_size(name, &args.0)?;
                    builtin.call(state, &args.0)
                },
            );
        }
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", self.source.clone())
            .map_err(|e| Error::Template(format!("the chat template does not parse: {e}")))?;
        Ok(env)
    }

    pub fn render(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        let list = messages.as_array().ok_or_else(|| {
            Error::InvalidArgument(
                "messages must be a list of {'role': ..., 'content': ...} dicts".into(),
            )
        })?;
        for (i, m) in list.iter().enumerate() {
            let ok = m.get("role").map(|r| r.is_string()).unwrap_or(false);
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "message {i} has no string 'role'"
                )));
            }
        }
        let env = self.env()?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        static REGISTER: std::sync::Once = std::sync::Once::new();
        REGISTER.call_once(|| minijinja::set_resource_check(resource_check));
        let input = serde_json::to_string(messages)
            .map(|s| s.len())
            .unwrap_or(0);
        let budget = RENDER_MEMORY
            .saturating_add(input.saturating_mul(8))
            .min(isize::MAX as usize) as isize;
        let _clear = LimitsGuard;
        let start = crate::interrupt::thread_bytes().unwrap_or(0);
        LIMITS.with(|l| l.set(Some((start, budget, Instant::now() + MAX_RENDER_TIME))));
        let ctx = minijinja::context! {
            messages => minijinja::Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
        };
        // a template from a model file reaches corners of minijinja that may still panic (its
        // printf-style format parser once sliced inside a character): a render error, not a crash
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tmpl.render(ctx)))
            .map_err(|p| {
                Error::Template(format!(
                    "rendering failed: minijinja failed on this template: {}",
                    crate::error::panic_message(p.as_ref())
                ))
            })?;
        let out = rendered.map_err(|e| {
            if e.to_string().contains(INTERRUPTED) {
                Error::Interrupted
            } else if e.kind() == minijinja::ErrorKind::OutOfFuel {
                Error::Template(format!(
                    "rendering failed: the template ran more than {FUEL} instructions"
                ))
            } else {
                Error::Template(format!("rendering failed: {e}"))
            }
        })?;
        if out.len() > MAX_RENDER_OUTPUT {
            return Err(Error::Template(format!(
                "rendering failed: the template wrote {} bytes, more than {MAX_RENDER_OUTPUT}",
                out.len()
            )));
        }
        Ok(out)
    }
}
