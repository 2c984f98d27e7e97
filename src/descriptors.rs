//! Build time: descriptor files and `.proto` sources → one [`DescriptorPool`] plus the
//! `google.api.http` rule of every method.
//!
//! Inputs are FileDescriptorSet files (`.binpb .pb .desc .protoset`), `.proto` sources
//! (compiled in-process by protox) and directories of either. The gateway's own copies of
//! google/api, google/rpc and the well-known types are always present, so users' sets need not
//! carry them and their `.proto` files can import them.
//!
//! Descriptor bytes are kept raw until the pool is built: prost's `FileDescriptorProto` drops
//! extension options, and `google.api.http` is one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;
use prost_reflect::DescriptorPool;

use crate::config::ReflectedSet;

pub mod reflection;

use crate::pb::google::api::HttpRule;

/// Extensions of FileDescriptorSet files.
pub const SET_EXTENSIONS: &[&str] = &["binpb", "pb", "desc", "protoset"];

const BUILTIN_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/builtin.binpb"));

/// `.proto` sources of the built-in google/api and google/rpc files, importable by users' sources.
const BUILTIN_SOURCES: &[(&str, &str)] = &[
    ("google/api/annotations.proto", include_str!("../proto/google/api/annotations.proto")),
    ("google/api/http.proto", include_str!("../proto/google/api/http.proto")),
    ("google/api/httpbody.proto", include_str!("../proto/google/api/httpbody.proto")),
    ("google/rpc/code.proto", include_str!("../proto/google/rpc/code.proto")),
    ("google/rpc/error_details.proto", include_str!("../proto/google/rpc/error_details.proto")),
    ("google/rpc/status.proto", include_str!("../proto/google/rpc/status.proto")),
];

/// Everything loaded from the descriptor paths.
#[derive(Debug, Clone)]
pub struct Descriptors {
    /// Every message, enum and service, the built-in ones included.
    pub pool: DescriptorPool,
    /// The `google.api.http` option of each annotated method, by full method name
    /// (`pkg.Service.Method`).
    pub http_rules: HashMap<String, HttpRule>,
    /// What each path contributed, for the startup log.
    pub sources: Vec<Source>,
}

/// One descriptor file or `.proto` source, and the proto files it defined.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file on disk.
    pub path: PathBuf,
    /// Proto file names it contributed (duplicates of earlier files are not listed).
    pub files: Vec<String>,
}

/// A descriptor path that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct DescriptorError {
    /// The file (or directory) at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// The pool of built-in files: google/api, google/rpc and the well-known types.
pub fn builtin_pool() -> Result<DescriptorPool, DescriptorError> {
    DescriptorPool::decode(BUILTIN_SET)
        .map_err(|e| DescriptorError { path: PathBuf::from("<built-in>"), reason: e.to_string() })
}

/// Loads every path into one pool. Every problem is reported, each naming its file.
pub fn load(paths: &[PathBuf]) -> Result<Descriptors, Vec<DescriptorError>> {
    load_with(paths, &[])
}

/// [`load`], with the sets fetched from upstreams' server reflection beside the files (each
/// named `reflection:<upstream>` in errors and sources).
pub fn load_with(paths: &[PathBuf], reflected: &[ReflectedSet]) -> Result<Descriptors, Vec<DescriptorError>> {
    let mut errors = Vec::new();
    let mut raw = Vec::new();
    for path in paths {
        if let Err(e) = collect(path, &mut raw) {
            errors.extend(e);
        }
    }
    for reflected in reflected {
        let origin = PathBuf::from(format!("reflection:{}", reflected.upstream));
        if let Err(reason) = push_set(&origin, &reflected.set, &mut raw) {
            errors.push(DescriptorError { path: origin, reason });
        }
    }
    let mut pool = builtin_pool().map_err(|e| vec![e])?;
    let builtin: HashSet<String> = pool.files().map(|f| f.name().to_owned()).collect();
    let (chosen, sources) = dedupe(raw, &builtin, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let origin: HashMap<&str, &Path> = chosen.iter().map(|f| (f.name.as_str(), f.origin.as_path())).collect();
    let set = FileSet { file: chosen.iter().map(|f| f.bytes.clone()).collect() };
    let encoded = set.encode_to_vec();
    // prost-reflect can panic while describing what is wrong with a malformed set (an index
    // past its file list, found by fuzzing): a file dropped into the directory must be refused,
    // never take the gateway down. The pool is only used when this succeeds.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut candidate = pool.clone();
        candidate.decode_file_descriptor_set(encoded.as_slice()).map(|()| candidate)
    }));
    pool = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(e)) => {
            let file = e.file().unwrap_or("");
            let path = origin.get(file).map_or_else(|| PathBuf::from(file), |p| p.to_path_buf());
            return Err(vec![DescriptorError { path, reason: format!("{file}: {e}") }]);
        }
        Err(_) => {
            let paths: Vec<String> = sources_of(&chosen);
            let path = PathBuf::from(paths.join(", "));
            let reason = "not a valid descriptor set: the descriptor library failed on it".to_owned();
            return Err(vec![DescriptorError { path, reason }]);
        }
    };
    let mut http_rules = HashMap::new();
    for file in &chosen {
        http_rules.extend(file.http_rules());
    }
    Ok(Descriptors { pool, http_rules, sources })
}

/// The distinct files the chosen descriptors came from.
fn sources_of(chosen: &[RawFile]) -> Vec<String> {
    let mut paths: Vec<String> = chosen.iter().map(|f| f.origin.display().to_string()).collect();
    paths.sort();
    paths.dedup();
    paths
}

// === raw files ===

/// One FileDescriptorProto, still encoded, and where it came from.
struct RawFile {
    name: String,
    bytes: Bytes,
    origin: PathBuf,
    lite: FileLite,
}

impl RawFile {
    fn http_rules(&self) -> impl Iterator<Item = (String, HttpRule)> + '_ {
        let package = self.lite.package.as_deref().unwrap_or("");
        self.lite.service.iter().flat_map(move |service| {
            let service_name = service.name.as_deref().unwrap_or("");
            service.method.iter().filter_map(move |method| {
                let rule = method.options.as_ref()?.http.clone()?;
                let name = [package, service_name, method.name.as_deref()?]
                    .into_iter()
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join(".");
                Some((name, rule))
            })
        })
    }
}

/// Reads one path: a descriptor set, a `.proto` source, or a directory of them.
fn collect(path: &Path, out: &mut Vec<RawFile>) -> Result<(), Vec<DescriptorError>> {
    let error = |reason: String| vec![DescriptorError { path: path.to_owned(), reason }];
    let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
    if meta.is_dir() {
        let mut sets = Vec::new();
        let mut protos = Vec::new();
        walk(path, &mut sets, &mut protos).map_err(|e| error(e.to_string()))?;
        if sets.is_empty() && protos.is_empty() {
            return Err(error("directory holds no descriptor sets or .proto files".into()));
        }
        let mut errors = Vec::new();
        for set in sets {
            if let Err(e) = read_set(&set, out) {
                errors.push(e);
            }
        }
        if !protos.is_empty()
            && let Err(e) = compile_protos(path, &protos, out)
        {
            errors.push(e);
        }
        return if errors.is_empty() { Ok(()) } else { Err(errors) };
    }
    match kind_of(path) {
        Some(Kind::Set) => read_set(path, out).map_err(|e| vec![e]),
        Some(Kind::Proto) => {
            let root = path.parent().unwrap_or(Path::new("."));
            compile_protos(root, &[path.to_owned()], out).map_err(|e| vec![e])
        }
        None => Err(error(format!("not a descriptor file: expected one of .{}, or .proto", SET_EXTENSIONS.join(" .")))),
    }
}

enum Kind {
    Set,
    Proto,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?;
    if SET_EXTENSIONS.contains(&ext) {
        Some(Kind::Set)
    } else if ext == "proto" {
        Some(Kind::Proto)
    } else {
        None
    }
}

/// Lists descriptor sets and `.proto` files under `dir`, sorted, skipping hidden entries.
fn walk(dir: &Path, sets: &mut Vec<PathBuf>, protos: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Links followed: a ConfigMap mounts its files as links into `..data`.
        if std::fs::metadata(&path)?.is_dir() {
            walk(&path, sets, protos)?;
        } else {
            match kind_of(&path) {
                Some(Kind::Set) => sets.push(path),
                Some(Kind::Proto) => protos.push(path),
                None => {}
            }
        }
    }
    Ok(())
}

fn read_set(path: &Path, out: &mut Vec<RawFile>) -> Result<(), DescriptorError> {
    let error = |reason: String| DescriptorError { path: path.to_owned(), reason };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    push_set(path, &bytes, out).map_err(error)
}

/// Splits an encoded FileDescriptorSet into its files.
fn push_set(origin: &Path, bytes: &[u8], out: &mut Vec<RawFile>) -> Result<(), String> {
    let set = FileSet::decode(bytes).map_err(|e| format!("not a FileDescriptorSet: {e}"))?;
    if set.file.is_empty() {
        return Err("the descriptor set holds no files".into());
    }
    for bytes in set.file {
        let lite = FileLite::decode(bytes.clone())
            .map_err(|e| format!("not a FileDescriptorSet: a file does not decode: {e}"))?;
        let name = lite.name.clone().filter(|n| !n.is_empty()).ok_or("a file in the set has no name")?;
        out.push(RawFile { name, bytes, origin: origin.to_owned(), lite });
    }
    Ok(())
}

/// Compiles `.proto` sources with `root` as the import root.
fn compile_protos(root: &Path, protos: &[PathBuf], out: &mut Vec<RawFile>) -> Result<(), DescriptorError> {
    use protox::file::{ChainFileResolver, GoogleFileResolver, IncludeFileResolver};
    let mut resolver = ChainFileResolver::new();
    resolver.add(IncludeFileResolver::new(root.to_owned()));
    resolver.add(BuiltinSources);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    for proto in protos {
        compiler.open_file(proto).map_err(|e| {
            let path = e.file().map_or_else(|| proto.clone(), |f| root.join(f));
            let reason = match line_and_column(&e) {
                Some((line, column)) => format!("line {line}, column {column}: {e}"),
                None => e.to_string(),
            };
            DescriptorError { path, reason }
        })?;
    }
    let origin = if protos.len() == 1 { protos[0].clone() } else { root.to_owned() };
    push_set(&origin, &compiler.encode_file_descriptor_set(), out)
        .map_err(|reason| DescriptorError { path: origin.clone(), reason })
}

/// Where a compile error points in its file, 1-based, when it points anywhere.
fn line_and_column(error: &protox::Error) -> Option<(usize, usize)> {
    use miette::Diagnostic;
    let label = error.labels()?.next()?;
    let contents = error.source_code()?.read_span(label.inner(), 0, 0).ok()?;
    Some((contents.line() + 1, contents.column() + 1))
}

/// Serves the built-in google/api and google/rpc sources to protox.
struct BuiltinSources;

impl protox::file::FileResolver for BuiltinSources {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match BUILTIN_SOURCES.iter().find(|(n, _)| *n == name) {
            Some((name, source)) => protox::file::File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Keeps the first copy of each proto file; a later copy must be the same file.
///
/// Copies of the built-in google files are dropped: the gateway's own are wire-compatible,
/// and users' sets often carry slightly different vintages of them.
fn dedupe(
    raw: Vec<RawFile>,
    builtin: &HashSet<String>,
    errors: &mut Vec<DescriptorError>,
) -> (Vec<RawFile>, Vec<Source>) {
    let mut chosen: Vec<RawFile> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut sources: Vec<Source> = Vec::new();
    for file in raw {
        if builtin.contains(&file.name) {
            continue;
        }
        if let Some(&first) = index.get(&file.name) {
            let first = &chosen[first];
            if first.bytes != file.bytes && !same_definitions(&first.bytes, &file.bytes) {
                errors.push(DescriptorError {
                    path: file.origin.clone(),
                    reason: format!("defines {} differently from {}", file.name, first.origin.display()),
                });
            }
            continue;
        }
        match sources.last_mut() {
            Some(source) if source.path == file.origin => source.files.push(file.name.clone()),
            _ => sources.push(Source { path: file.origin.clone(), files: vec![file.name.clone()] }),
        }
        index.insert(file.name.clone(), chosen.len());
        chosen.push(file);
    }
    (chosen, sources)
}

/// Whether two encodings of a FileDescriptorProto differ only in source info (comments and
/// locations), which compilers emit or not depending on their flags.
fn same_definitions(a: &[u8], b: &[u8]) -> bool {
    match (without_source_info(a), without_source_info(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The top-level fields of an encoded FileDescriptorProto, minus `source_code_info` (field 9).
fn without_source_info(mut bytes: &[u8]) -> Option<Vec<u8>> {
    const SOURCE_CODE_INFO: u64 = 9;
    let mut out = Vec::with_capacity(bytes.len());
    while !bytes.is_empty() {
        let start = bytes;
        let key = prost::encoding::decode_varint(&mut bytes).ok()?;
        let len = match key & 7 {
            0 => {
                prost::encoding::decode_varint(&mut bytes).ok()?;
                0
            }
            1 => 8,
            2 => usize::try_from(prost::encoding::decode_varint(&mut bytes).ok()?).ok()?,
            5 => 4,
            _ => return None,
        };
        bytes = bytes.get(len..)?;
        if key >> 3 != SOURCE_CODE_INFO {
            out.extend_from_slice(&start[..start.len() - bytes.len()]);
        }
    }
    Some(out)
}

// === just enough of descriptor.proto to read files without losing extension options ===

#[derive(Clone, PartialEq, Message)]
struct FileSet {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    file: Vec<Bytes>,
}

#[derive(Clone, PartialEq, Message)]
struct FileLite {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
    #[prost(string, repeated, tag = "3")]
    dependency: Vec<String>,
    #[prost(message, repeated, tag = "6")]
    service: Vec<ServiceLite>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceLite {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    method: Vec<MethodLite>,
}

#[derive(Clone, PartialEq, Message)]
struct MethodLite {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, optional, tag = "4")]
    options: Option<MethodOptionsLite>,
}

#[derive(Clone, PartialEq, Message)]
struct MethodOptionsLite {
    /// `google.api.http`, extension 72295728 of `google.protobuf.MethodOptions`.
    #[prost(message, optional, tag = "72295728")]
    http: Option<HttpRule>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.files.join(", "))
    }
}

#[cfg(test)]
mod tests;
