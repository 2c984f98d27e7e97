use std::fs;

use super::*;

fn examples_set() -> PathBuf {
    PathBuf::from(concat!(env!("OUT_DIR"), "/examples.binpb"))
}

/// Compiles `source` (as `name`) into an encoded FileDescriptorSet, imports included.
fn compile(name: &str, source: &str, source_info: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, source).unwrap();
    let mut compiler = protox::Compiler::with_file_resolver({
        let mut chain = protox::file::ChainFileResolver::new();
        chain.add(protox::file::IncludeFileResolver::new(dir.path().to_owned()));
        chain.add(BuiltinSources);
        chain.add(protox::file::GoogleFileResolver::new());
        chain
    });
    compiler.include_imports(true).include_source_info(source_info);
    compiler.open_file(&path).unwrap();
    compiler.encode_file_descriptor_set()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    path
}

fn load_err(paths: &[PathBuf]) -> Vec<String> {
    load(paths).unwrap_err().into_iter().map(|e| e.to_string()).collect()
}

const ANNOTATED: &str = r#"
syntax = "proto3";
package acme.v1;
import "google/api/annotations.proto";
service Things {
  rpc GetThing(GetThingRequest) returns (Thing) { option (google.api.http) = { get: "/v1/things/{id}" }; }
}
message GetThingRequest { string id = 1; }
message Thing { string id = 1; }
"#;

#[test]
fn descriptor_sets_load_with_their_http_rules() {
    let loaded = load(&[examples_set()]).unwrap();
    let mut annotated: Vec<&str> = loaded.http_rules.keys().map(String::as_str).collect();
    annotated.sort_unstable();
    assert_eq!(annotated.len(), 12);
    assert_eq!(annotated[0], "example.orders.v1.OrderService.CancelOrder");
    assert!(loaded.pool.get_message_by_name("google.rpc.BadRequest").is_some(), "built-ins are always there");
    assert_eq!(loaded.sources.len(), 1);
    assert_eq!(loaded.sources[0].files, ["example/users/v1/users.proto", "example/orders/v1/orders.proto"]);
}

#[test]
fn proto_sources_compile_at_load_time() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "acme/v1/things.proto", ANNOTATED.as_bytes());
    write(dir.path(), "README.md", b"not a descriptor");
    let loaded = load(&[dir.path().to_owned()]).unwrap();
    let rule = &loaded.http_rules["acme.v1.Things.GetThing"];
    assert_eq!(rule.pattern, Some(crate::pb::google::api::http_rule::Pattern::Get("/v1/things/{id}".into())));
    // A single .proto file works too, with its directory as the import root.
    let file = write(dir.path(), "single.proto", b"syntax = \"proto3\"; package s; message M {}");
    assert!(load(&[file]).unwrap().pool.get_message_by_name("s.M").is_some());
}

#[test]
fn broken_sources_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.proto", b"syntax = \"proto3\";\nmessage M { string x = ; }\n");
    let errors = load_err(&[bad]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("bad.proto"), "{errors:?}");
    let missing = write(dir.path(), "m/missing.proto", b"syntax = \"proto3\"; import \"nowhere.proto\";");
    let errors = load_err(&[missing]);
    assert!(errors[0].contains("missing.proto") && errors[0].contains("nowhere.proto"), "{errors:?}");
}

#[test]
fn corrupt_and_odd_files_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = write(dir.path(), "corrupt.binpb", b"\x0a\xff\xff\xff\xff\x0fgarbage");
    let empty = write(dir.path(), "empty.pb", b"");
    let text = write(dir.path(), "notes.txt", b"hello");
    let nothing = dir.path().join("nope.binpb");
    let errors = load_err(&[corrupt.clone(), empty, text, nothing]);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].starts_with(&format!("{}: not a FileDescriptorSet", corrupt.display())), "{errors:?}");
    assert!(errors[1].ends_with("the descriptor set holds no files"), "{errors:?}");
    assert!(errors[2].ends_with("not a descriptor file: expected one of .binpb .pb .desc .protoset, or .proto"));
    assert!(errors[3].contains("No such file or directory"), "{errors:?}");
    let empty_dir = tempfile::tempdir().unwrap();
    assert!(
        load_err(&[empty_dir.path().to_owned()])[0].ends_with("directory holds no descriptor sets or .proto files")
    );
}

#[test]
fn a_set_missing_an_import_names_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let set = compile("acme/v1/things.proto", ANNOTATED, false);
    // Keep only the last file (things.proto), dropping the imports it needs.
    let files = FileSet::decode(set.as_slice()).unwrap().file;
    let alone = FileSet { file: vec![files.last().unwrap().clone()] }.encode_to_vec();
    let path = write(dir.path(), "alone.binpb", &alone);
    // The built-ins supply google/api; add a file importing something absent.
    let orphan = prost_types::FileDescriptorProto {
        name: Some("orphan.proto".into()),
        dependency: vec!["absent.proto".into()],
        ..Default::default()
    };
    let orphan_path =
        write(dir.path(), "orphan.binpb", &prost_types::FileDescriptorSet { file: vec![orphan] }.encode_to_vec());
    assert!(load(&[path]).is_ok(), "google/api imports resolve to the built-ins");
    let errors = load_err(std::slice::from_ref(&orphan_path));
    assert_eq!(
        errors,
        [format!("{}: orphan.proto: imported file 'absent.proto' has not been added", orphan_path.display())]
    );
}

#[test]
fn the_same_file_twice_is_fine_but_two_versions_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.binpb", &compile("acme/v1/things.proto", ANNOTATED, false));
    let b = write(dir.path(), "b.binpb", &compile("acme/v1/things.proto", ANNOTATED, true));
    let loaded = load(&[a.clone(), b]).unwrap();
    assert_eq!(loaded.sources.len(), 1, "the second copy adds nothing");
    let changed = ANNOTATED.replace("string id = 1; }\nmessage Thing", "int64 id = 1; }\nmessage Thing");
    let c = write(dir.path(), "c.binpb", &compile("acme/v1/things.proto", &changed, false));
    assert_eq!(
        load_err(&[a.clone(), c.clone()]),
        [format!("{}: defines acme/v1/things.proto differently from {}", c.display(), a.display())]
    );
    // Two files defining one symbol.
    let d = write(dir.path(), "d.binpb", &compile("other/things.proto", ANNOTATED, false));
    let errors = load_err(&[a, d.clone()]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with(&format!("{}: other/things.proto: name 'acme.v1", d.display())), "{errors:?}");
    assert!(errors[0].contains("is already defined in file 'acme/v1/things.proto'"), "{errors:?}");
}

#[test]
fn users_copies_of_builtin_files_defer_to_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let old_http = "syntax = \"proto3\"; package google.api; message HttpRule { string get = 2; }";
    let set = compile("google/api/http.proto", old_http, false);
    let path = write(dir.path(), "vendored.binpb", &set);
    let loaded = load(&[path]).unwrap();
    let rule = loaded.pool.get_message_by_name("google.api.HttpRule").unwrap();
    assert!(rule.get_field_by_name("additional_bindings").is_some(), "the built-in definition is kept");
}

#[test]
fn source_info_is_ignored_when_comparing() {
    let with = compile("x.proto", "syntax = \"proto3\"; // c\nmessage X {}", true);
    let without = compile("x.proto", "syntax = \"proto3\"; // c\nmessage X {}", false);
    let last = |set: &[u8]| FileSet::decode(set).unwrap().file.last().unwrap().clone();
    assert_ne!(last(&with), last(&without));
    assert!(same_definitions(&last(&with), &last(&without)));
    assert!(without_source_info(&[0x0b]).is_none(), "group wire types are refused");
    assert!(without_source_info(&[0x0a, 0x05, 0x01]).is_none(), "truncated");
}
