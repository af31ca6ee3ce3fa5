//! Chat templates: the Jinja text a model ships (`tokenizer.chat_template` in GGUF,
//! `chat_template` in tokenizer_config.json), rendered with minijinja the way HF transformers
//! renders it: trim_blocks and lstrip_blocks on, `raise_exception`, `strftime_now`, Python string
//! methods (`.strip()`, `.startswith()`, ...) through minijinja-contrib's pycompat.

use crate::error::{Error, Result};

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
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
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
        tmpl.render(minijinja::context! {
            messages => minijinja::Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
        })
        .map_err(|e| Error::Template(format!("rendering failed: {e}")))
    }
}
