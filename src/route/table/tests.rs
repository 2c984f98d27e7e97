use super::*;
use crate::test_util;

/// (method, path) → "Method value, value" or the non-match outcome.
fn outcome(table: &Table, method: &str, path: &str) -> String {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    match table.lookup(&method, path) {
        Lookup::Matched(m) => {
            let mut out = m.route.method.name().to_owned();
            if !m.values.is_empty() {
                out.push(' ');
                out.push_str(&m.values.join(", "));
            }
            out
        }
        Lookup::NotFound => "404".into(),
        Lookup::MethodNotAllowed { allow } => {
            format!("405 {}", allow.iter().map(Method::as_str).collect::<Vec<_>>().join(","))
        }
        Lookup::InvalidPath { reason } => format!("400 {reason}"),
    }
}

#[test]
fn lookups_follow_http_proto() {
    let table = test_util::table();
    let cases = [
        // Literal templates and query-free paths.
        ("GET", "/v1/shelves", "ListShelves"),
        ("POST", "/v1/shelves", "CreateShelf"),
        // Variable bindings.
        ("GET", "/v1/shelves/12", "GetShelf 12"),
        ("GET", "/v1/shelves/12/books", "ListBooks 12"),
        ("PUT", "/v1/shelves/7", "UpdateShelf 7"),
        // Different HTTP methods on one template.
        ("DELETE", "/v1/shelves/12", "DeleteShelf 12"),
        ("PATCH", "/v1/shelves/12", "405 GET,DELETE,PUT"),
        // Multi-segment variables and additional bindings.
        ("GET", "/v1/shelves/1/books/2", "GetBook shelves/1/books/2"),
        ("GET", "/v2/shelves/1/books/2", "GetBook shelves/1/books/2"),
        ("GET", "/v1/books/any/depth/at/all", "GetBook any/depth/at/all"),
        ("PATCH", "/v1/shelves/1/books/2", "UpdateBook shelves/1/books/2"),
        // A literal after a variable.
        ("GET", "/v1/shelves/1/books/2/title", "GetBookTitle shelves/1/books/2"),
        // `**` takes the rest, including nothing.
        ("GET", "/v1/files/a/b/c.txt", "GetFile a/b/c.txt"),
        ("GET", "/v1/files", "GetFile "),
        // Custom verbs, also after `**` and after anonymous wildcards.
        ("POST", "/v1/shelves/1/books/2:archive", "ArchiveBook shelves/1/books/2"),
        ("POST", "/v1/shelves/1/books/2:tag", "TagBook shelves/1/books/2"),
        ("POST", "/v1/buckets/b1/objects/a/b/c:touch", "Touch a/b/c"),
        // Without a verb route for GET, `2:archive` is an ordinary segment value.
        ("GET", "/v1/shelves/1/books/2:archive", "GetBook shelves/1/books/2:archive"),
        ("PUT", "/v1/shelves/1/books/2:archive", "405 POST,GET,PATCH"),
        // An unknown verb is part of the last segment.
        ("GET", "/v1/shelves/7:unknown", "GetShelf 7:unknown"),
        // Custom HTTP methods.
        ("SEARCH", "/v1/books", "SearchBooks"),
        ("PUT", "/v1/books", "405 SEARCH,GET"),
        // `**` matches zero segments too.
        ("GET", "/v1/books", "GetBook "),
        // The implicit route of every method.
        ("POST", "/protogate.testing.v1.Bookstore/Ping", "Ping"),
        ("POST", "/protogate.testing.v1.Bookstore/GetShelf", "GetShelf"),
        ("GET", "/protogate.testing.v1.Bookstore/Ping", "405 POST"),
        // Nothing matches.
        ("GET", "/v3/shelves", "404"),
        ("GET", "/v1/shelves/1/books/2/chapters", "404"),
        ("GET", "/v1/shelves/", "404"),
        ("GET", "/", "404"),
        ("GET", "", "404"),
        ("GET", "*", "404"),
    ];
    for (method, path, want) in cases {
        assert_eq!(outcome(&table, method, path), want, "{method} {path}");
    }
}

#[test]
fn percent_escapes_follow_the_variable_kind() {
    let table = test_util::table();
    // Single-segment variables are fully decoded.
    assert_eq!(
        outcome(&table, "GET", "/v1/everything/a%2Fb%20c/1/RED/true/n%C3%A9"),
        "EchoPath a/b c, 1, RED, true, né"
    );
    // Multi-segment variables keep reserved characters encoded, so `%2F` stays one segment.
    assert_eq!(outcome(&table, "GET", "/v1/files/dir/a%2Fb%20c%3F"), "GetFile dir/a%2Fb c%3F");
    assert_eq!(outcome(&table, "GET", "/v1/files/%zz%2"), "GetFile %zz%2");
    // Literals are compared as sent.
    assert_eq!(outcome(&table, "GET", "/v1/shel%76es"), "404");
}

#[test]
fn unroutable_paths_are_rejected() {
    let table = test_util::table();
    assert_eq!(outcome(&table, "GET", "/v1/files/../etc/passwd"), "400 the path contains a '.' or '..' segment");
    assert_eq!(outcome(&table, "GET", "/v1/shelves/./1"), "400 the path contains a '.' or '..' segment");
    assert_eq!(
        outcome(&table, "GET", "/v1/everything/%FF/1/RED/true/x"),
        "400 path variable string_value is not valid UTF-8 once percent-decoded"
    );
    // Encoded dots are data, not path structure.
    assert_eq!(outcome(&table, "GET", "/v1/files/..%2Fsecret"), "GetFile ..%2Fsecret");
}

#[test]
fn same_shape_and_method_is_a_conflict_and_the_first_wins() {
    let routes = test_util::routes();
    let get_shelf = routes.iter().find(|r| r.method.name() == "GetShelf").unwrap().clone();
    let mut other = routes.iter().find(|r| r.method.name() == "ListBooks").unwrap().clone();
    other.template = PathTemplate::parse("/v1/shelves/{id}").unwrap();
    other.bindings.truncate(0);
    let mut builder = TableBuilder::new();
    builder.push(get_shelf).push(other);
    let table = builder.build();
    assert_eq!(table.conflicts(), [Conflict { winner: 0, shadowed: 1 }]);
    assert_eq!(outcome(&table, "GET", "/v1/shelves/3"), "GetShelf 3");
}

#[test]
fn a_large_table_resolves_every_route() {
    // 10,000 routes over shared prefixes: literal, variable, `**` and verb templates.
    let base = test_util::routes().into_iter().find(|r| r.method.name() == "Ping").unwrap();
    let mut builder = TableBuilder::new();
    let mut expected = Vec::new();
    for i in 0..2_500 {
        for (j, (template, path)) in [
            (format!("/api/v{}/res{i}", i % 7), format!("/api/v{}/res{i}", i % 7)),
            (format!("/api/v{}/res{i}/*", i % 7), format!("/api/v{}/res{i}/42", i % 7)),
            (format!("/api/v{}/res{i}/*/**", i % 7), format!("/api/v{}/res{i}/42/x/y", i % 7)),
            (format!("/api/v{}/res{i}/*:run", i % 7), format!("/api/v{}/res{i}/42:run", i % 7)),
        ]
        .into_iter()
        .enumerate()
        {
            let mut route = base.clone();
            route.template = PathTemplate::parse(&template).unwrap();
            builder.push(route);
            expected.push((i * 4 + j, path));
        }
    }
    let table = builder.build();
    assert!(table.conflicts().is_empty());
    for (index, path) in expected {
        match table.lookup(&Method::POST, &path) {
            Lookup::Matched(m) => assert_eq!(m.index, index, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn reserved_expansion_decoding() {
    assert_eq!(decode_reserved_expansion("a%20b%2Fc%3a%41").as_deref(), Some("a b%2Fc%3aA"));
    assert_eq!(decode_reserved_expansion("%+1%").as_deref(), Some("%+1%"));
    assert_eq!(decode_reserved_expansion("%C3%A9").as_deref(), Some("é"));
    assert_eq!(decode_reserved_expansion("%FF"), None);
    assert_eq!(decode_all("a%2Fb+c").as_deref(), Some("a/b+c"));
}
