use super::*;

#[test]
fn empty_file_gives_defaults() {
    let config = Config::from_toml("").unwrap();
    assert_eq!(config.listen, DEFAULT_LISTEN);
    assert_eq!(config.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!(config.descriptors.paths, vec![PathBuf::from("descriptors")]);
    assert!(crate::gateway::validate(&config).is_empty());
}

#[test]
fn contract_example_parses() {
    let config = Config::from_toml(
        r#"
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"

[descriptors]
paths = ["descriptors"]
watch = true

[json]
emit_unpopulated = false
use_proto_names = false
enums_as_ints = false
ignore_unknown_fields = false
ignored_query_parameters = ["_", "callback"]

[[upstreams]]
name = "users"
services = ["example.users.v1.*"]
endpoints = ["http://127.0.0.1:50051"]
timeout = "10s"
"#,
    )
    .unwrap();
    assert_eq!(config.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
    let users = &config.upstreams[0];
    assert_eq!(users.services, vec![ServiceSelector::Package("example.users.v1".into())]);
    assert_eq!(users.endpoints[0].to_string(), "http://127.0.0.1:50051");
    assert_eq!(users.timeout, Some(Duration::from_secs(10)));
    assert_eq!(config.json.ignored_query_parameters, ["_", "callback"]);
    assert!(config.descriptors.watch);
    assert_eq!(crate::gateway::validate(&config), []);
}

#[test]
fn observability_sections_are_checked() {
    let config = Config::from_toml(
        r#"
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:8080"
[request_id]
header = "x correlation"
[tracing]
sample_ratio = 1.5
[access_log]
format = "human"
"#,
    )
    .unwrap();
    assert_eq!(config.access_log.format, AccessLogFormat::Human);
    let keys: Vec<String> = crate::gateway::validate(&config).into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["admin_listen", "request_id.header", "tracing.sample_ratio"]);
    let err = Config::from_toml("[access_log]\nformat = \"xml\"").unwrap_err();
    assert!(err.message.contains("json"), "{err}");
}

#[test]
fn the_drain_timeout_must_be_longer_than_zero() {
    let config = Config::from_toml("drain_timeout = \"0s\"").unwrap();
    let keys: Vec<String> = crate::gateway::validate(&config).into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["drain_timeout"]);
    assert_eq!(Config::default().drain_timeout, Duration::from_secs(30));
}

#[test]
fn the_effective_config_shows_no_secret() {
    let config = Config::from_toml(
        r#"
[jwt]
algorithms = ["HS256"]
keys = [{ kid = "k1", alg = "HS256", secret = "s3cr3t-value" }]
[rate_limit]
backend = "redis"
redis_url = "redis://app:hunter2@127.0.0.1:6379/0"
[limits]
header_read_timeout = "1m 30s"
"#,
    )
    .unwrap();
    let shown = config.effective().to_string();
    assert!(!shown.contains("s3cr3t-value") && !shown.contains("hunter2"), "{shown}");
    assert!(shown.contains(r#""secret":"[redacted]""#), "{shown}");
    assert!(shown.contains("redis://app:[redacted]@127.0.0.1:6379/0"), "{shown}");
    assert!(shown.contains(r#""header_read_timeout":"1m 30s""#), "{shown}");
    assert_eq!(hide_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    assert_eq!(hide_password("redis://:pw@h:1"), "redis://:[redacted]@h:1");
    assert_eq!(hide_password("https://token@h/x"), "https://[redacted]@h/x");
    assert_eq!(
        hide_password("https://idp.example/jwks.json?tenant=a&Password=p&pass=q&x=1#top"),
        "https://idp.example/jwks.json?tenant=a&Password=[redacted]&pass=[redacted]&x=1#top"
    );
    assert_eq!(hide_password("http://u:p@h?token=t"), "http://u:[redacted]@h?token=[redacted]");
}

#[test]
fn every_url_in_the_effective_config_hides_its_credentials() {
    let config = Config::from_toml(
        r#"
[jwt]
algorithms = ["RS256"]
jwks_url = "https://idp:hunter1@issuer.example/jwks.json?password=hunter2"
[tracing]
otlp_endpoint = "http://collector:hunter3@127.0.0.1:4317"
[cache]
backend = "redis"
redis_url = "redis://:hunter4@127.0.0.1:6379"
[[upstreams]]
name = "users"
services = ["*"]
endpoints = ["https://svc:hunter5@users.internal:443"]
"#,
    )
    .unwrap();
    let shown = config.effective().to_string();
    for secret in ["hunter1", "hunter2", "hunter3", "hunter4", "hunter5"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("https://idp:[redacted]@issuer.example/jwks.json?password=[redacted]"), "{shown}");
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = Config::from_toml("[json]\nemit_unpopulatd = true\n").unwrap_err();
    assert!(err.message.contains("emit_unpopulatd"), "{err}");
}

#[test]
fn bad_values_name_the_problem() {
    for (toml, needle) in [
        ("listen = \"nowhere\"", "invalid socket address"),
        ("[[upstreams]]\nname = \"a\"\nservices = [\"a..b\"]\nendpoints = []", "invalid service selector"),
        ("[[upstreams]]\nname = \"a\"\nservices = [\"*\"]\nendpoints = [\"ftp://x:1\"]", "http:// or https:// URL"),
        ("[[upstreams]]\nname = \"a\"\nservices = [\"*\"]\nendpoints = [\"http://x:1/path\"]", "must not have a path"),
        (
            "[[upstreams]]\nname = \"a\"\nservices = [\"*\"]\nendpoints = [\"http://x:1\"]\ntimeout = \"soon\"",
            "invalid duration",
        ),
    ] {
        let err = Config::from_toml(toml).unwrap_err();
        assert!(err.message.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn validate_lists_every_problem_with_its_key() {
    let config = Config::from_toml(
        r#"
max_body_bytes = 0
[jwt]
issuers = ["x"]
[[upstreams]]
name = "a"
services = ["*"]
endpoints = []
[[upstreams]]
name = "a"
services = ["*", "pkg.*"]
endpoints = ["http://127.0.0.1:1"]
timeout = "0s"
"#,
    )
    .unwrap();
    let keys: Vec<String> = crate::gateway::validate(&config).into_iter().map(|e| e.key).collect();
    assert_eq!(
        keys,
        [
            // What the configuration shows alone, then what the features' own rules refuse.
            "max_body_bytes",
            "upstreams[0].endpoints",
            "upstreams[1].name",
            "upstreams[1].services",
            "upstreams[1].timeout",
            "jwt.algorithms",
            "jwt.keys",
        ]
    );
}

#[test]
fn policies_and_jwt_are_checked_as_a_whole() {
    let config = Config::from_toml(
        r#"
[jwt]
algorithms = ["RS256", "none"]
keys = [ { alg = "HS256", secret = "s" }, { alg = "RS256", secret = "s", pem = "p" } ]
jwks_url = "ftp://issuer.example/jwks.json"
forward_claims = { sub = "grpc-status" }

[[policy]]
name = "a"
match = { path_prefix = "v1", grpc = ["a/b/c"] }
scopes = ["x"]
rate_limits = [ { key = "cookie:x", per_second = 5, per_minute = 1 } ]
"#,
    )
    .unwrap();
    let errors: Vec<String> = crate::gateway::validate(&config).into_iter().map(|e| e.to_string()).collect();
    let keys: Vec<&str> = errors.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "policy[0].rate_limits[0].per_second",
            "policy[0].auth",
            "policy[0].match.path_prefix",
            "policy[0].match.grpc[0]",
            "policy[0].rate_limits[0].key",
            "jwt.algorithms[1]",
            "jwt.jwks_url",
            "jwt.keys[0].secret",
            "jwt.keys[0].alg",
            "jwt.keys[1].secret",
            "jwt.keys[1]",
            "jwt.forward_claims.sub",
        ],
        "{errors:#?}"
    );
    let required = Config::from_toml(
        "[[policy]]
name = \"p\"
auth = \"required\"
",
    )
    .unwrap();
    let errors = crate::gateway::validate(&required);
    assert_eq!(errors[0].key, "jwt", "{errors:?}");
}

#[test]
fn selectors_match_and_rank() {
    let exact: ServiceSelector = "a.b.Svc".parse().unwrap();
    let pkg: ServiceSelector = "a.b.*".parse().unwrap();
    let parent: ServiceSelector = "a.*".parse().unwrap();
    assert!(exact.matches("a.b.Svc") && !exact.matches("a.b.Svc2"));
    assert!(pkg.matches("a.b.Svc") && pkg.matches("a.b.c.Svc") && !pkg.matches("a.bc.Svc"));
    assert!(ServiceSelector::Any.matches("x.Y"));
    assert!(exact.specificity() > pkg.specificity());
    assert!(pkg.specificity() > parent.specificity());
    assert!(parent.specificity() > ServiceSelector::Any.specificity());
}

#[test]
fn upstream_flags_parse_with_and_without_selector() {
    let plain: UpstreamFlag = "http://127.0.0.1:50051".parse().unwrap();
    assert_eq!(plain.selector, ServiceSelector::Any);
    let scoped: UpstreamFlag = "example.users.v1.*=http://127.0.0.1:1".parse().unwrap();
    assert_eq!(scoped.selector, ServiceSelector::Package("example.users.v1".into()));
    assert_eq!(scoped.endpoint.to_string(), "http://127.0.0.1:1");
    assert!("bad name=http://x:1".parse::<UpstreamFlag>().is_err());
}

#[test]
fn flags_override_the_file() {
    let mut config = Config::from_toml(
        r#"
[[upstreams]]
name = "users"
services = ["example.users.v1.*"]
endpoints = ["http://127.0.0.1:1"]
[[upstreams]]
name = "rest"
services = ["*", "other.Svc"]
endpoints = ["http://127.0.0.1:2"]
"#,
    )
    .unwrap();
    config.merge(Overrides {
        listen: Some("127.0.0.1:9999".parse().unwrap()),
        admin_listen: None,
        descriptors: vec![PathBuf::from("x.binpb")],
        upstreams: vec![
            "example.users.v1.*=http://127.0.0.1:3".parse().unwrap(),
            "http://127.0.0.1:4".parse().unwrap(),
        ],
    });
    assert_eq!(config.listen.port(), 9999);
    assert_eq!(config.descriptors.paths, vec![PathBuf::from("x.binpb")]);
    let summary: Vec<(String, String)> = config
        .upstreams
        .iter()
        .map(|u| {
            let services: Vec<String> = u.services.iter().map(ToString::to_string).collect();
            (services.join(","), u.endpoints[0].to_string())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("other.Svc".to_owned(), "http://127.0.0.1:2".to_owned()),
            ("example.users.v1.*".to_owned(), "http://127.0.0.1:3".to_owned()),
            ("*".to_owned(), "http://127.0.0.1:4".to_owned()),
        ]
    );
    assert!(crate::gateway::validate(&config).is_empty());
}

#[test]
fn relative_descriptor_paths_follow_the_config_file() {
    let mut config = Config::from_toml("[descriptors]\npaths = [\"d\", \"/abs\"]").unwrap();
    config.resolve_paths(Path::new("/etc/protogate"));
    assert_eq!(config.descriptors.paths, [PathBuf::from("/etc/protogate/d"), PathBuf::from("/abs")]);
}

#[test]
fn environment_variables_fill_strings_and_unknown_keys_keep_their_path() {
    let env = |name: &str| (name == "REDIS").then(|| "redis://:p\"w@10.0.0.5:6379".to_owned());
    let config =
        Config::from_toml_with("[rate_limit]\nbackend = \"redis\"\nredis_url = \"${REDIS}\"\n# costs $0\n", &env)
            .unwrap();
    assert_eq!(config.rate_limit.redis_url.as_deref(), Some("redis://:p\"w@10.0.0.5:6379"), "a quote stays inside");
    let unknown = Config::from_toml_with("[json]\nemit_unpopulatd = \"${REDIS}\"\n", &env).unwrap_err();
    assert_eq!(unknown.key, "json.emit_unpopulatd");
    let unset = Config::from_toml_with("listen = \"${LISTEN}\"\n", &env).unwrap_err();
    assert_eq!(unset.key, "listen");
    assert!(unset.message.contains("LISTEN is not set"), "{unset}");
}

#[test]
fn secret_files_fill_their_values_and_not_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("redis"), "redis://:pw@h:6379\n").unwrap();
    let mut config = Config::from_toml(
        "[rate_limit]\nredis_url_file = \"redis\"\n[cache]\nredis_url = \"redis://a\"\nredis_url_file = \"redis\"\n",
    )
    .unwrap();
    config.resolve_paths(dir.path());
    let errors = config.read_secret_files().unwrap_err();
    assert_eq!(config.rate_limit.redis_url.as_deref(), Some("redis://:pw@h:6379"), "the trailing newline is dropped");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "cache.redis_url_file");
    assert!(errors[0].message.contains("not both"), "{}", errors[0]);
}
