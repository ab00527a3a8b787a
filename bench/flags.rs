//! The benchmarks' command line: `--name value` pairs, nothing else.

use std::collections::HashMap;

use anyhow::{bail, Context as _, Result};

/// Every `--name value` of the command line, by name.
pub fn flags() -> Result<HashMap<String, String>> {
    let mut kv = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        // `cargo bench` passes --bench, the one flag without a value.
        if a == "--bench" {
            continue;
        }
        let Some(name) = a.strip_prefix("--") else {
            bail!("unexpected argument {a}");
        };
        let value = it
            .next()
            .with_context(|| format!("--{name} needs a value"))?;
        kv.insert(name.to_string(), value);
    }
    Ok(kv)
}
