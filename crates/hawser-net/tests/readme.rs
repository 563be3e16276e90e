//! The README's quick start is the example `quick_start.rs`, word for word, and no Rust block
//! in the README or in `docs/` hides lines from its reader.
//!
//! `.ci/quickstart` builds and runs the same text as a crate of its own; the README's Rust
//! blocks also run as doctests of this crate.

use std::path::Path;

const README: &str = include_str!("../../../README.md");
const QUICK_START: &str = include_str!("../examples/quick_start.rs");

/// The contents of every fenced block whose info string starts with `lang`, in order.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```") {
                    let first = info.split(',').next().unwrap_or("").trim();
                    if first == lang {
                        current = Some(String::new());
                    }
                }
            }
            Some(text) => {
                if line.trim_start().starts_with("```") {
                    found.push(current.take().unwrap_or_default());
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    found
}

#[test]
fn the_quick_start_block_is_the_example_file() {
    let rust = blocks(README, "rust");
    let first = rust.first().expect("the README has a Rust block");
    assert!(
        first == QUICK_START,
        "the README's first Rust block differs from crates/hawser-net/examples/quick_start.rs; \
         copy the file into the README"
    );
}

#[test]
fn the_quick_start_dependencies_name_this_version() {
    let toml = blocks(README, "toml");
    let deps = toml.first().expect("the README has a TOML block");
    let mut version = env!("CARGO_PKG_VERSION").split('.');
    let (major, minor) = (version.next().unwrap(), version.next().unwrap());
    let line = format!("hawser-net = \"{major}.{minor}\"");
    assert!(deps.starts_with("[dependencies]\n"), "{deps}");
    assert!(
        deps.lines().any(|l| l == line),
        "{line} missing from:\n{deps}"
    );
}

#[test]
fn no_rust_block_has_hidden_lines() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut files = vec![("README.md".to_string(), README.to_string())];
    for entry in std::fs::read_dir(&docs).expect("docs/ exists") {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).expect("a readable document");
            files.push((path.display().to_string(), text));
        }
    }
    for (name, text) in files {
        for block in blocks(&text, "rust") {
            for line in block.lines() {
                let t = line.trim_start();
                assert!(
                    !(t == "#" || t.starts_with("# ")),
                    "{name}: a Rust block hides a line from readers: {line:?}"
                );
            }
        }
    }
}
