//! The crate's dependency rule, enforced: modules import only modules of lower layers, so the
//! pipeline reads top to bottom and no import cycle can come back. The layers, top first (each
//! module's own docs say where it sits):
//!
//! | layer | modules | role |
//! |---|---|---|
//! | 0 | `cli`, `main`, `explain`, `server` | the binary and the listener |
//! | 1 | `admin`, `layers` | the admin listener; tower layers around the doors |
//! | 2 | `reload` | swaps rebuilt gateways in |
//! | 3 | `doors` | the dispatcher, over its doors |
//! | 4 | `doors::*` (rest, streaming, websocket, composite, connect, grpc, mcp) | one door each: never another door |
//! | 5 | `openapi` | the OpenAPI document, and the JSON Schemas of messages the MCP door reuses |
//! | 6 | `pipeline` | the steps every door runs |
//! | 7 | `gateway` | the built state, and the build step that validates features |
//! | 8 | `profile` | route groups under a prefix |
//! | 9 | `aggregate`, `policy` | composite-route plans; policies |
//! | 10 | `observability` | request ids, trace context, access log, metrics, spans |
//! | 11 | `cache`, `rate_limit` | the response cache; rate limits and client addresses |
//! | 12 | `auth`, `redis_connection` | token verification; Redis |
//! | 12½ | `tls` | TLS termination, and the client connector of the gateway's own fetches |
//! | 13 | `error` | every failure, translated to the wire once: no feature module |
//! | 14 | `upstream` | the calls to upstreams |
//! | 15 | `status`, `metadata` | the code → HTTP table; header ↔ metadata rules |
//! | 16 | `transcode` | JSON ↔ protobuf |
//! | 17 | `route` | templates, rules, the route table |
//! | 18 | `codec`, `descriptors` | descriptor loading (files, `.proto` sources, server reflection) |
//! | 19 | `config` | plain data at the bottom |
//!
//! A submodule may use its parent's items (`crate::auth` from `auth::jwks`); test code (a
//! `tests` module, `tests.rs`, `test_util.rs`) may import anything.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const LAYERS: &[&[&str]] = &[
    &["cli", "main", "explain", "server"],
    &["admin", "layers"],
    &["reload"],
    &["doors"],
    &[
        "doors::rest",
        "doors::streaming",
        "doors::websocket",
        "doors::composite",
        "doors::connect",
        "doors::grpc",
        "doors::mcp",
    ],
    &["openapi"],
    &["pipeline"],
    &["gateway"],
    &["profile"],
    &["aggregate", "policy"],
    &["observability"],
    &["cache", "rate_limit"],
    &["auth", "redis_connection"],
    &["tls"],
    &["error"],
    &["upstream"],
    &["status", "metadata"],
    &["transcode"],
    &["route"],
    &["codec", "descriptors"],
    &["config"],
];

/// Imports that name no module of the crate's: the generated messages and the crate root.
const EVERYWHERE: &[&str] = &["pb", "lib"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The node a file belongs to: its top-level module, or `doors::X` for a door.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| *p != "mod").collect();
    match parts.as_slice() {
        ["doors", door, ..] => format!("doors::{door}"),
        [top, ..] => (*top).to_owned(),
        [] => "lib".to_owned(),
    }
}

/// The crate modules a file's code names (`crate::x::…`, `use crate::{x, y}`), comments and
/// test modules aside.
fn imports(code: &str) -> BTreeSet<String> {
    let code = code.split("#[cfg(test)]\nmod tests").next().unwrap_or(code);
    let code: String = code.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let paths: Vec<String> = match rest.strip_prefix('{') {
            Some(group) => {
                let end = matching_brace(group);
                split_top_level(&group[..end])
            }
            None => vec![rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect()],
        };
        for path in paths {
            let mut segments = path.split("::").map(str::trim);
            let Some(top) = segments.next().filter(|s| !s.is_empty()) else { continue };
            let top = top.trim_start_matches('{');
            match (top, segments.next()) {
                ("doors", Some(door)) if is_door(door) => found.insert(format!("doors::{door}")),
                (top, _) => found.insert(top.to_owned()),
            };
        }
    }
    found
}

fn is_door(name: &str) -> bool {
    LAYERS.iter().flat_map(|layer| layer.iter()).any(|module| *module == format!("doors::{name}"))
}

fn matching_brace(text: &str) -> usize {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth) = (Vec::new(), String::new(), 0);
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts.into_iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" || name == "test_util.rs" || name == "lib.rs" {
            continue;
        }
        let module = module_of(&src, file);
        let Some(layer) = layer_of(&module) else {
            violations.push(format!("{}: module {module} is in no layer of tests/layering.rs", file.display()));
            continue;
        };
        seen.insert(module.clone());
        let code = std::fs::read_to_string(file).unwrap();
        for imported in imports(&code) {
            let own = imported == module || module.starts_with(&format!("{imported}::"));
            if own || EVERYWHERE.contains(&imported.as_str()) {
                continue;
            }
            match layer_of(&imported) {
                Some(below) if below > layer => {}
                Some(_) => violations.push(format!(
                    "{}: {module} (layer {layer}) imports {imported} (layer {}), which is not below it",
                    file.strip_prefix(&src).unwrap().display(),
                    layer_of(&imported).unwrap_or(0)
                )),
                None => violations.push(format!("{}: imports crate::{imported}, in no layer", file.display())),
            }
        }
    }
    assert!(violations.is_empty(), "the dependency rule is broken:\n{}", violations.join("\n"));
    assert!(seen.len() > 25, "the test found the modules: {seen:?}");
}

#[test]
fn the_reader_sees_through_groups_and_comments() {
    let code = "use crate::a::B;\nuse crate::{c::D, e::{F, G}};\n// crate::commented\nfn f() { crate::h::i(); }\n\
                use crate::doors::rest::x;\n#[cfg(test)]\nmod tests { use crate::later; }";
    let found: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(found, ["a", "c", "doors::rest", "e", "h"]);
}
