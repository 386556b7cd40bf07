//! Architecture test: the layers of `src/` import one way, downwards (see docs/architecture.md's
//! "Layers" and the `src/lib.rs` docs). A small ArchUnit-style check on the source text:
//! every `crate::<module>` path in a file (outside comments and string literals) must name its
//! own layer or one below it; the two drivers (`cli`, `web`) sit on top and do not import each
//! other.

use std::path::{Path, PathBuf};

/// The layers from the bottom up; a module may import from its own layer and those before it.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["kernels"],
    &["model"],
    &["data"],
    &["adapter"],
    &["tasks"],
    &["train"],
    &["report"],
    &["cli", "web"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The text of `src` with comments and string literals blanked (so doc links and messages
/// that mention a module are not imports).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // A string literal (raw strings in this crate hold no `"` before their end).
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal such as '"' or '\n' (lifetimes have no closing quote).
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            let ch = src[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The top-level modules a source text names through `crate::`: `crate::a::..` and the
/// members of `crate::{a::.., b}` groups.
fn imported_modules(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(p) = rest.find("crate::") {
        let after = &rest[p + "crate::".len()..];
        let preceded_by_ident = rest[..p]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !preceded_by_ident {
            if let Some(group) = after.strip_prefix('{') {
                // Top-level members of the group: split at commas outside nested braces.
                let mut depth = 0;
                let mut member = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.push(ident(member.trim()));
                            member.clear();
                            continue;
                        }
                        _ => {}
                    }
                    member.push(c);
                }
                out.push(ident(member.trim()));
            } else {
                out.push(ident(after));
            }
        }
        rest = after;
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// Upward imports in one file of module `module`: `(imported module, reason)`.
fn violations(module: &str, src: &str) -> Vec<String> {
    let Some(own) = layer_of(module) else {
        return vec![format!("module `{module}` is in no layer of LAYERS")];
    };
    let mut bad = Vec::new();
    for m in imported_modules(&code_only(src)) {
        // Root items re-exported by lib.rs (`crate::Error`, `crate::Result`) are error's.
        let target = match m.as_str() {
            "Error" | "Result" => "error",
            other => other,
        };
        match layer_of(target) {
            None => bad.push(format!("`crate::{m}` is in no layer of LAYERS")),
            Some(l) if l > own => bad.push(format!(
                "imports `crate::{m}` (layer {l}) from layer {own}: imports go down only"
            )),
            Some(l) if l == own && target != module => bad.push(format!(
                "imports `crate::{m}`: the drivers do not import each other"
            )),
            _ => {}
        }
    }
    bad
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src/").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_go_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src/");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        // The crate roots only declare and re-export the layers.
        if first == "lib.rs" || first == "main.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs");
        let text = std::fs::read_to_string(f).expect("read a source file");
        for v in violations(module, &text) {
            problems.push(format!("src/{}: {v}", rel.display()));
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} files found under src/");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_planted_upward_import_is_caught() {
    // model (layer 2) importing train (layer 6): refused, in either `use` form.
    let planted = "use crate::error::Result;\nuse crate::train::Trainer;\n";
    let v = violations("model", planted);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("crate::train"), "{v:?}");
    let grouped = "use crate::{\n    kernels::gelu,\n    report::{plot, share},\n};\n";
    let v = violations("adapter", grouped);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("crate::report"), "{v:?}");
    // Drivers do not import each other; paths in comments and strings do not count.
    assert_eq!(violations("web", "fn f() { crate::cli::main(); }").len(), 1);
    let quiet = "// see crate::train::run\n/// [`crate::cli`]\nlet s = \"crate::web\";\n";
    assert!(violations("kernels", quiet).is_empty());
    // Downward and same-layer imports pass.
    assert!(
        violations(
            "train",
            "use crate::model::Bert; use crate::train::Trainer;"
        )
        .is_empty()
    );
}
