use super::*;

fn lit(s: &str) -> Segment {
    Segment::Literal(s.to_owned())
}

/// (template, segments, verb, variables as (field path, start, end))
type Case<'a> = (&'a str, &'a [Segment], Option<&'a str>, &'a [(&'a str, usize, usize)]);

#[test]
fn parses_every_form_of_the_grammar() {
    let cases: &[Case<'_>] = &[
        ("/v1/shelves", &[lit("v1"), lit("shelves")], None, &[]),
        ("/v1/shelves/{shelf}", &[lit("v1"), lit("shelves"), Segment::Wildcard], None, &[("shelf", 2, 3)]),
        ("/v1/shelves/{shelf.id}", &[lit("v1"), lit("shelves"), Segment::Wildcard], None, &[("shelf.id", 2, 3)]),
        (
            "/v1/{name=shelves/*/books/*}",
            &[lit("v1"), lit("shelves"), Segment::Wildcard, lit("books"), Segment::Wildcard],
            None,
            &[("name", 1, 5)],
        ),
        ("/v1/files/{path=**}", &[lit("v1"), lit("files"), Segment::DeepWildcard], None, &[("path", 2, 3)]),
        ("/v1/*/x/**", &[lit("v1"), Segment::Wildcard, lit("x"), Segment::DeepWildcard], None, &[]),
        (
            "/v1/{name=shelves/*}:archive",
            &[lit("v1"), lit("shelves"), Segment::Wildcard],
            Some("archive"),
            &[("name", 1, 3)],
        ),
        (
            "/v1/{a}/{b.c}:do",
            &[lit("v1"), Segment::Wildcard, Segment::Wildcard],
            Some("do"),
            &[("a", 1, 2), ("b.c", 2, 3)],
        ),
        ("/pkg.Service/Method", &[lit("pkg.Service"), lit("Method")], None, &[]),
        ("/v1/{x=**}:verb", &[lit("v1"), Segment::DeepWildcard], Some("verb"), &[("x", 1, 2)]),
    ];
    for (text, segments, verb, vars) in cases {
        let t = PathTemplate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(t.segments(), *segments, "{text}");
        assert_eq!(t.verb(), *verb, "{text}");
        let got: Vec<(String, usize, usize)> =
            t.variables().iter().map(|v| (v.field_path.join("."), v.start, v.end)).collect();
        let want: Vec<(String, usize, usize)> = vars.iter().map(|(p, s, e)| ((*p).to_owned(), *s, *e)).collect();
        assert_eq!(got, want, "{text}");
        assert_eq!(t.to_string(), *text, "round trip");
    }
}

#[test]
fn rejects_what_the_grammar_does_not_allow() {
    for (text, reason) in [
        ("", "a template starts with '/'"),
        ("v1/x", "a template starts with '/'"),
        ("/v1//x", "expected a segment"),
        ("/v1/", "expected a segment"),
        ("/v1/{name", "expected '}' to close the variable"),
        ("/v1/{}", "expected a field name"),
        ("/v1/{1abc}", "expected a field name"),
        ("/v1/{a.}", "expected a field name"),
        ("/v1/{a={b}}", "variables cannot nest"),
        ("/v1/**/x", "'**' must be the last segment"),
        ("/v1/{a=**}/x", "'**' must be the last segment"),
        ("/v1/{a}/{a}", "the same field is bound twice"),
        ("/v1/x:", "expected a segment"),
        ("/v1/x:a/b", "unexpected text after the verb"),
        ("/v1/x}", "unexpected character"),
        ("/v1/x y", "unexpected character"),
    ] {
        let err = PathTemplate::parse(text).expect_err(text);
        assert_eq!(err.reason, reason, "{text}");
    }
}

#[test]
fn shape_erases_variable_names() {
    let a = PathTemplate::parse("/v1/{name=shelves/*}/books/{id}:get").unwrap();
    let b = PathTemplate::parse("/v1/shelves/{shelf}/books/*:get").unwrap();
    assert_eq!(a.shape(), "/v1/shelves/*/books/*:get");
    assert_eq!(a.shape(), b.shape());
}

#[test]
fn multi_segment_variables_are_recognised() {
    let t = PathTemplate::parse("/v1/{a}/{b=x/*}/{c=**}").unwrap();
    let multi: Vec<bool> = t.variables().iter().map(|v| v.is_multi_segment(&t)).collect();
    assert_eq!(multi, [false, true, true]);
}

#[test]
fn never_panics_on_arbitrary_input() {
    // A cheap exhaustive sweep over short strings of the grammar's own characters.
    let alphabet = ['/', '{', '}', '*', '=', ':', '.', 'a', '1'];
    let mut stack = vec![String::new()];
    while let Some(s) = stack.pop() {
        let _ = PathTemplate::parse(&s);
        if s.len() < 6 {
            for c in alphabet {
                stack.push(format!("{s}{c}"));
            }
        }
    }
}
