//! cargo run --release --example generate -- MODEL.gguf "prompt" [max_new_tokens]
use std::io::Write;
use std::sync::Arc;

fn main() -> candlewick::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: generate MODEL.gguf PROMPT [MAX_NEW_TOKENS]");
        std::process::exit(2);
    }
    let t0 = std::time::Instant::now();
    let model = Arc::new(candlewick::load(&args[1])?);
    eprintln!("loaded in {:?}", t0.elapsed());
    let ids = model.tokenizer()?.encode(&args[2], true)?;
    eprintln!("prompt ids: {ids:?}");
    let params = candlewick::GenerationConfig {
        max_new_tokens: args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32),
        ..Default::default()
    };
    let mut g = candlewick::Generator::new(model, ids, params)?;
    let t0 = std::time::Instant::now();
    let out = g.run(|t| {
        print!("{t}");
        std::io::stdout().flush().ok();
        Ok(())
    })?;
    println!();
    eprintln!(
        "{} tokens in {:?}; finish={:?}; ids={:?}",
        out.token_ids.len(),
        t0.elapsed(),
        out.finish_reason,
        out.token_ids
    );
    Ok(())
}
