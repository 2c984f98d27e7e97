use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

fn pairs(map: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        map.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
    out.sort();
    out
}

fn peer() -> Peer {
    let ip = Some("10.0.0.7".parse().unwrap());
    Peer { ip, client: ip, tls: false, trusted: false }
}

fn rules() -> HeaderRules {
    HeaderRules::new(REQUEST_ID)
}

fn proxy() -> Peer {
    Peer { trusted: true, ..peer() }
}

#[test]
fn request_headers_become_metadata() {
    let md = to_grpc(
        &headers(&[
            ("grpc-metadata-tenant", "acme"),
            ("grpc-metadata-trace-bin", "AQID"),
            ("authorization", "Bearer t"),
            ("x-request-id", "r-1"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "a=1"),
            ("host", "api.example.com"),
            ("accept", "application/json"),
            ("cookie", "secret=1"),
            ("content-type", "application/json"),
        ]),
        peer(),
        &rules(),
    )
    .unwrap();
    assert_eq!(
        pairs(&md),
        [
            ("authorization", "Bearer t"),
            ("tenant", "acme"),
            ("trace-bin", "AQID"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "a=1"),
            ("x-forwarded-for", "10.0.0.7"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "r-1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

const FORWARDING: [(&str, &str); 5] = [
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-host", "outer.example"),
    ("x-forwarded-proto", "https"),
    ("forwarded", "for=1.2.3.4;proto=https"),
    ("host", "api.example.com"),
];

#[test]
fn forwarded_headers_extend_what_trusted_proxies_sent() {
    let md = to_grpc(&headers(&FORWARDING), proxy(), &rules()).unwrap();
    assert_eq!(md["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
    assert_eq!(md["x-forwarded-host"], "outer.example");
    assert_eq!(md["x-forwarded-proto"], "https");
    assert_eq!(md["forwarded"], "for=1.2.3.4;proto=https");
}

#[test]
fn anyone_else_s_forwarding_headers_are_replaced_by_what_the_gateway_saw() {
    for md in [
        to_grpc(&headers(&FORWARDING), peer(), &rules()).unwrap(),
        passthrough(&headers(&FORWARDING), peer(), &rules()).unwrap(),
    ] {
        assert_eq!(md["x-forwarded-for"], "10.0.0.7");
        assert_eq!(md["x-forwarded-host"], "api.example.com");
        assert_eq!(md["x-forwarded-proto"], "http");
        assert!(!md.contains_key("forwarded"));
    }
}

#[test]
fn names_the_gateway_owns_are_never_taken_from_a_client() {
    let sent = headers(&[
        ("authorization", "Bearer verified"),
        ("grpc-metadata-authorization", "Bearer other"),
        ("grpc-metadata-cookie", "session=1"),
        ("grpc-metadata-x-forwarded-for", "6.6.6.6"),
        ("grpc-metadata-x-real-ip", "6.6.6.6"),
        ("grpc-metadata-forwarded", "for=6.6.6.6"),
        ("grpc-metadata-x-request-id", "mine"),
        ("grpc-metadata-traceparent", "00-00000000000000000000000000000001-0000000000000001-01"),
        ("grpc-metadata-x-correlation-id", "mine"),
        ("grpc-metadata-tenant", "acme"),
    ]);
    let correlation = HeaderName::from_static("x-correlation-id");
    let md = to_grpc(&sent, peer(), &HeaderRules::new(correlation)).unwrap();
    assert_eq!(md.get_all("authorization").iter().collect::<Vec<_>>(), ["Bearer verified"]);
    for owned in ["cookie", "x-real-ip", "forwarded", "x-request-id", "traceparent", "x-correlation-id"] {
        assert!(!md.contains_key(owned), "{owned}");
    }
    assert_eq!(md["x-forwarded-for"], "10.0.0.7");
    assert_eq!(md["tenant"], "acme");

    let plain = headers(&[
        ("authorization", "Bearer verified"),
        ("cookie", "session=1"),
        ("x-real-ip", "6.6.6.6"),
        ("proxy-authorization", "Basic x"),
        ("x-request-id", "r-1"),
        ("tenant", "acme"),
        ("grpc-timeout", "1S"),
    ]);
    let md = passthrough(&plain, peer(), &rules()).unwrap();
    assert_eq!(
        pairs(&md),
        [
            ("authorization", "Bearer verified"),
            ("grpc-timeout", "1S"),
            ("tenant", "acme"),
            ("x-forwarded-for", "10.0.0.7"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "r-1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[test]
fn two_authorization_headers_are_refused() {
    let two = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
    let refused = MetadataError::Repeated { header: "authorization" };
    assert_eq!(to_grpc(&two, peer(), &rules()).unwrap_err(), refused);
    assert_eq!(passthrough(&two, peer(), &rules()).unwrap_err(), refused);
    assert_eq!(single_authorization(&two), Err(refused));
}

#[test]
fn plain_answers_carry_no_browser_directive_an_upstream_set_unless_exposed() {
    let metadata = headers(&[
        ("set-cookie", "session=upstream"),
        ("access-control-allow-origin", "*"),
        ("strict-transport-security", "max-age=0"),
        ("content-security-policy", "default-src *"),
        ("x-served-by", "users"),
        ("grpc-status", "0"),
        ("content-type", "application/grpc"),
    ]);
    let mut out = HeaderMap::new();
    to_plain_headers(&metadata, "", &[], &mut out);
    assert_eq!(pairs(&out), [("x-served-by".to_owned(), "users".to_owned())]);
    let mut out = HeaderMap::new();
    to_plain_headers(&metadata, "trailer-", &[HeaderName::from_static("set-cookie")], &mut out);
    assert_eq!(out["trailer-set-cookie"], "session=upstream");
    assert!(!out.contains_key("trailer-access-control-allow-origin"));
    let mut passed = metadata.clone();
    strip_browser_directives(&mut passed, &[]);
    assert_eq!(passed.len(), 3, "{passed:?}");
}

#[test]
fn hop_by_hop_and_reserved_keys_are_never_forwarded() {
    let md = to_grpc(
        &headers(&[
            ("connection", "keep-alive, grpc-metadata-secret"),
            ("grpc-metadata-secret", "s"),
            ("grpc-metadata-connection", "close"),
            ("grpc-metadata-te", "trailers"),
            ("grpc-metadata-grpc-status", "0"),
            ("grpc-metadata-content-type", "text/plain"),
            ("grpc-metadata-host", "evil"),
            ("grpc-metadata-transfer-encoding", "chunked"),
            ("grpc-metadata-", "empty"),
            ("grpc-metadata-ok", "1"),
        ]),
        Peer { tls: true, ..Peer::default() },
        &rules(),
    )
    .unwrap();
    assert_eq!(pairs(&md), [("ok", "1"), ("x-forwarded-proto", "https")].map(|(k, v)| (k.to_owned(), v.to_owned())));
}

#[test]
fn binary_metadata_is_base64_and_normalised() {
    let md = to_grpc(&headers(&[("grpc-metadata-a-bin", "AQI="), ("grpc-metadata-b-bin", "_-8")]), peer(), &rules())
        .unwrap();
    assert_eq!(md["a-bin"], "AQI");
    assert_eq!(md["b-bin"], "/+8");
    let err = to_grpc(&headers(&[("grpc-metadata-c-bin", "***")]), peer(), &rules()).unwrap_err();
    assert_eq!(err.to_string(), "header grpc-metadata-c-bin: a -bin value must be base64");
}

#[test]
fn grpc_timeout_follows_the_grpc_syntax() {
    for (text, want) in [
        ("1H", Some(Duration::from_secs(3600))),
        ("2M", Some(Duration::from_secs(120))),
        ("10S", Some(Duration::from_secs(10))),
        ("250m", Some(Duration::from_millis(250))),
        ("7u", Some(Duration::from_micros(7))),
        ("99999999n", Some(Duration::from_nanos(99_999_999))),
        ("123456789m", None),
        ("10", None),
        ("m", None),
        ("-1S", None),
        ("1.5S", None),
        ("1s", None),
        ("", None),
        ("é", None),
    ] {
        assert_eq!(parse_grpc_timeout(text), want, "{text:?}");
    }
    assert_eq!(grpc_timeout(&headers(&[("grpc-timeout", "5S")])), Ok(Some(Duration::from_secs(5))));
    assert_eq!(grpc_timeout(&HeaderMap::new()), Ok(None));
    assert!(grpc_timeout(&headers(&[("grpc-timeout", "soon")])).is_err());
}

#[test]
fn response_metadata_becomes_prefixed_headers() {
    let mut out = HeaderMap::new();
    from_grpc(
        &headers(&[
            ("content-type", "application/grpc"),
            ("date", "today"),
            ("x-served-by", "users"),
            ("x-http-code", "201"),
            ("grpc-encoding", "gzip"),
            ("session-bin", "AQID"),
        ]),
        &headers(&[("grpc-status", "0"), ("grpc-message", ""), ("x-cost", "3"), ("connection", "close")]),
        &[HeaderName::from_static("x-served-by"), HeaderName::from_static("grpc-status")],
        &mut out,
    );
    assert_eq!(
        pairs(&out),
        [
            ("grpc-metadata-session-bin", "AQID"),
            ("grpc-metadata-x-served-by", "users"),
            ("grpc-trailer-x-cost", "3"),
            ("x-served-by", "users"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
        "an exposed name is also a plain header; a reserved one never"
    );
}

#[test]
fn x_http_code_chooses_the_success_status() {
    assert_eq!(http_code(&headers(&[("x-http-code", "201")]), &HeaderMap::new()), Some(StatusCode::CREATED));
    assert_eq!(http_code(&HeaderMap::new(), &headers(&[("x-http-code", "204")])), Some(StatusCode::NO_CONTENT));
    assert_eq!(http_code(&headers(&[("x-http-code", "500")]), &HeaderMap::new()), None, "not for errors");
    assert_eq!(http_code(&headers(&[("x-http-code", "abc")]), &HeaderMap::new()), None);
    assert_eq!(http_code(&HeaderMap::new(), &HeaderMap::new()), None);
}

#[test]
fn listed_headers_are_forwarded_at_every_door_but_never_the_gateways_own() {
    let sent = headers(&[("accept-language", "fr"), ("cookie", "session=1"), ("x-other", "o")]);
    let rules = HeaderRules {
        forward: vec![HeaderName::from_static("accept-language"), HeaderName::from_static("cookie")],
        ..HeaderRules::new(REQUEST_ID)
    };
    let md = to_grpc(&sent, peer(), &rules).unwrap();
    assert_eq!((md["accept-language"].to_str().unwrap(), md["cookie"].to_str().unwrap()), ("fr", "session=1"));
    assert!(md.get("x-other").is_none(), "only what is listed");
    let md = passthrough(&sent, peer(), &rules).unwrap();
    assert_eq!(md["cookie"], "session=1", "a pass-through door forwards a listed cookie too");
    assert!(passthrough(&sent, peer(), &super::HeaderRules::new(REQUEST_ID)).unwrap().get("cookie").is_none());
    for owned in
        ["authorization", "x-forwarded-for", "forwarded", "traceparent", "x-request-id", "grpc-timeout", "host"]
    {
        assert!(!is_forwardable(owned, &REQUEST_ID), "{owned}");
    }
    assert!(is_forwardable("cookie", &REQUEST_ID) && is_forwardable("accept-language", &REQUEST_ID));
}

/// grpc-gateway's convention: the standard headers also go up as `grpcgateway-<name>`, never
/// credentials, and a client's own `grpcgateway-*` metadata is dropped.
#[test]
fn the_grpc_gateway_convention_copies_standard_headers_under_its_prefix() {
    let sent = headers(&[
        ("user-agent", "curl/8"),
        ("accept-language", "fr"),
        ("host", "api.example.com"),
        ("authorization", "Bearer t"),
        ("cookie", "s=1"),
        ("x-custom", "not standard"),
        ("grpc-metadata-grpcgateway-user-agent", "spoofed"),
        ("grpc-metadata-tenant", "acme"),
    ]);
    let grpc_gateway = HeaderRules { grpc_gateway_names: true, ..rules() };
    let md = to_grpc(&sent, peer(), &grpc_gateway).unwrap();
    assert_eq!(md.get_all("grpcgateway-user-agent").iter().collect::<Vec<_>>(), ["curl/8"], "not the spoofed one");
    assert_eq!(md["grpcgateway-accept-language"], "fr");
    assert_eq!(md["grpcgateway-host"], "api.example.com");
    assert_eq!(md["tenant"], "acme");
    assert_eq!(md["authorization"], "Bearer t");
    for absent in ["grpcgateway-authorization", "grpcgateway-cookie", "grpcgateway-x-custom", "cookie", "x-custom"] {
        assert!(md.get(absent).is_none(), "{absent}");
    }
    let plain = to_grpc(&sent, peer(), &rules()).unwrap();
    assert!(plain.keys().all(|k| !k.as_str().starts_with("grpcgateway-") || k == "grpcgateway-user-agent"));
    assert_eq!(plain["grpcgateway-user-agent"], "spoofed", "without the convention the prefix is nobody's");
    let passed = passthrough(&headers(&[("grpcgateway-user-agent", "spoofed")]), peer(), &grpc_gateway).unwrap();
    assert!(passed.get("grpcgateway-user-agent").is_none(), "nor at the gRPC doors");
}
