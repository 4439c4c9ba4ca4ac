//! lb-proxy's modules import downward only: each file's `crate::` and `super::` references
//! are read from the source, and no module may reach one in a layer above its own, so that
//! no import cycle can form between layers (docs/data-plane.md draws them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, lowest first; a module may use its own layer's module and those below.
const LAYERS: &[&[&str]] = &[
    &["clock", "proto", "shutdown"],
    &["side_listener"],
    &["metrics"],
    &["tls", "access_log"],
    &["trace"],
    &["upstream", "policy"],
    &["runtime"],
    &["proxy"],
    &["conn"],
    &["listener"],
    &["discovery"],
    &["daemon"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The top-level modules a source file's code names through `crate::`.
fn crate_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn modules_import_downward_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_owned();
        // The crate root and the binary stand above every layer.
        let Some(own) = rank(&module) else {
            assert!(
                module == "lib" || module == "bin",
                "{}: a module in no layer: add it to LAYERS",
                relative.display()
            );
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_references(&text) {
            let Some(theirs) = rank(&used) else {
                panic!("{}: crate::{used} is in no layer", relative.display());
            };
            let same_module = used == module;
            if theirs > own || (theirs == own && !same_module) {
                violations
                    .entry(relative.display().to_string())
                    .or_insert_with(Vec::new)
                    .push(used);
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules that import upward (or across their layer): {violations:#?}"
    );
    assert!(files.len() > 30, "only {} sources found", files.len());
}
