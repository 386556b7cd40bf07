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

#[test]
fn the_route_table_in_the_architecture_doc_is_the_code_s() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let route = std::fs::read_to_string(root.join("src/kernels/route.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let table: Vec<&str> = route
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter(|l| l.starts_with('|'))
        .collect();
    assert!(table.len() >= 7, "{table:?}");
    let block = table.join("\n");
    assert!(
        doc.contains(&block),
        "docs/architecture.md must hold src/kernels/route.rs's table verbatim:\n{block}"
    );
}

/// The module path of a file under `src/` (`kernels/fused/flex.rs` → `kernels::fused::flex`,
/// `kernels/mod.rs` → `kernels`).
fn module_path(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .components()
        .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" {
            parts.push(stem.to_string());
        }
    }
    parts.join("::")
}

/// The paths a source text names from `crate::`, `super::` or `self::`, resolved against
/// `module` (the file's module), as segment lists; groups (`a::{b, c::d}`) give one path per
/// member.
fn named_paths(code: &str, module: &str) -> Vec<Vec<String>> {
    let own: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let b: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let starts = |w: &str| b[i..].iter().take(w.len()).copied().eq(w.chars());
        let base: Option<Vec<String>> = if i > 0 && is_ident(b[i - 1]) {
            None
        } else if starts("crate::") {
            i += "crate::".len();
            Some(Vec::new())
        } else if starts("super::") {
            let mut p = own.clone();
            while b[i..].iter().take(7).copied().eq("super::".chars()) {
                i += 7;
                // `super` of module `a::b` (file `a/b.rs`) is `a`; of `a` (`a/mod.rs`) the root.
                p.pop();
            }
            Some(p)
        } else if starts("self::") {
            i += "self::".len();
            Some(own.clone())
        } else {
            None
        };
        let Some(base) = base else {
            i += 1;
            continue;
        };
        // Read `a::b::{c, d::e}` from i.
        let mut segs = base.clone();
        loop {
            if i < b.len() && b[i] == '{' {
                // One path per top-level member of the group.
                let mut depth = 0;
                let mut member = String::new();
                i += 1;
                while i < b.len() {
                    let c = b[i];
                    i += 1;
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            let mut p = segs.clone();
                            p.extend(member.split("::").map(|s| s.trim().to_string()));
                            out.push(p);
                            member.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        member.push(c);
                    }
                }
                let mut p = segs.clone();
                p.extend(member.split("::").map(|s| s.trim().to_string()));
                out.push(p);
                segs.clear();
                break;
            }
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            if i > start {
                segs.push(b[start..i].iter().collect());
            }
            if i > start && b[i..].iter().take(2).copied().eq("::".chars()) {
                i += 2;
                continue;
            }
            break;
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

/// The children of the closest common ancestor of modules `a` and `b` that hold them
/// (`kernels::fused::flex`, `kernels::wgpu` → `kernels::fused`, `kernels::wgpu`).
fn branches(a: &str, b: &str) -> (String, String) {
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split("::").collect(), b.split("::").collect());
    let common = pa.iter().zip(&pb).take_while(|(x, y)| x == y).count();
    (pa[..=common].join("::"), pb[..=common].join("::"))
}

/// Import circles between the files and folders of `src/`: each an edge list
/// `a -> b -> ... -> a`. An edge is a file naming an item of another module, drawn between
/// their branches under their closest common ancestor (files and folders alike); a module
/// naming its own ancestors or descendants (those that declare it, or it declares) is no edge.
fn file_circles(files: &[(String, String)]) -> Vec<String> {
    let modules: std::collections::BTreeSet<&str> = files.iter().map(|(m, _)| m.as_str()).collect();
    let mut edges: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    for (module, code) in files {
        for p in named_paths(code, module) {
            let target = (1..=p.len())
                .rev()
                .map(|n| p[..n].join("::"))
                .find(|m| modules.contains(m.as_str()));
            let Some(target) = target else { continue };
            // A child naming its ancestors, or a parent its descendants, is no edge; any other
            // edge joins the two modules' branches under their closest common ancestor (so a
            // file in `kernels/fused/` naming `kernels::wgpu` is the edge `fused -> wgpu`).
            let related = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}::"));
            if related(module, &target) || related(&target, module) {
                continue;
            }
            let (from, to) = branches(module, &target);
            if let (Some(f), Some(t)) = (modules.get(from.as_str()), modules.get(to.as_str())) {
                edges.entry(f).or_default().insert(t);
            }
        }
    }
    // Depth-first search for back edges.
    let mut circles = Vec::new();
    let mut state: std::collections::BTreeMap<&str, u8> = Default::default();
    fn visit<'a>(
        m: &'a str,
        edges: &std::collections::BTreeMap<&'a str, std::collections::BTreeSet<&'a str>>,
        state: &mut std::collections::BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        circles: &mut Vec<String>,
    ) {
        state.insert(m, 1);
        stack.push(m);
        for &t in edges.get(m).into_iter().flatten() {
            match state.get(t).copied().unwrap_or(0) {
                0 => visit(t, edges, state, stack, circles),
                1 => {
                    let from = stack.iter().position(|&s| s == t).unwrap_or(0);
                    let mut c: Vec<&str> = stack[from..].to_vec();
                    c.push(t);
                    circles.push(c.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m, 2);
    }
    for (m, _) in files {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            visit(m, &edges, &mut state, &mut Vec::new(), &mut circles);
        }
    }
    circles
}

#[test]
fn no_import_circle_between_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    let files: Vec<(String, String)> = paths
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?;
            if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
                return None;
            }
            let text = std::fs::read_to_string(f).ok()?;
            Some((module_path(rel), code_only(&text)))
        })
        .collect();
    assert!(files.len() > 30);
    let circles = file_circles(&files);
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn a_planted_file_circle_is_caught() {
    let files = vec![
        ("k::a".to_string(), "use super::b::f;".to_string()),
        ("k::b".to_string(), "use crate::k::{a::g, c};".to_string()),
        ("k::c".to_string(), "fn f() {}".to_string()),
        ("k".to_string(), "use self::a::g;".to_string()),
    ];
    let c = file_circles(&files);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].contains("k::a -> k::b -> k::a"), "{c:?}");
    // A file deep in a folder and a sibling of the folder: a circle between the two branches.
    let files = vec![
        ("k::f".to_string(), "pub use self::g::x;".to_string()),
        ("k::f::g".to_string(), "use crate::k::w::y;".to_string()),
        ("k::w".to_string(), "use super::f::x;".to_string()),
    ];
    let c = file_circles(&files);
    assert_eq!(c, ["k::f -> k::w -> k::f"], "{c:?}");
    // A group right after `super::` or `crate::`.
    let files = vec![
        ("k::a".to_string(), "use super::{b, c};".to_string()),
        ("k::b".to_string(), "use crate::{k::a::z, e};".to_string()),
    ];
    assert_eq!(file_circles(&files).len(), 1);
    // A child naming its parent is no edge.
    let files = vec![
        ("k".to_string(), "use self::a::g;".to_string()),
        ("k::a".to_string(), "use super::h;".to_string()),
    ];
    assert!(file_circles(&files).is_empty());
}
