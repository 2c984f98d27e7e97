//! JWT authentication and policies: every key kind, every way a token can be wrong, scopes,
//! claims forwarded upstream and never spoofed, and the upstream untouched by refusals.
//!
//! Keys are generated when the tests run (openssl), never committed.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tonic::Code;

use crate::support::{Harness, Reply};

const SECRET: &str = "an HMAC secret of thirty-two bytes!";

/// Private keys in PEM, generated once for all the tests.
struct Keys {
    dir: tempfile::TempDir,
    rsa: Vec<u8>,
    ec: Vec<u8>,
    ed: Vec<u8>,
    /// An EC key nobody configured: "a key from another JWKS".
    stranger: Vec<u8>,
}

fn openssl(args: &[&str]) {
    let status =
        std::process::Command::new("openssl").args(args).status().expect("openssl runs (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?}");
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &path("rsa.pem")]);
        openssl(&["pkey", "-in", &path("rsa.pem"), "-pubout", "-out", &path("rsa.pub.pem")]);
        for name in ["ec", "stranger"] {
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &path(&format!("{name}.pem")),
            ]);
        }
        openssl(&["genpkey", "-algorithm", "ED25519", "-out", &path("ed.pem")]);
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        let (rsa, ec, ed, stranger) = (read("rsa.pem"), read("ec.pem"), read("ed.pem"), read("stranger.pem"));
        // The JWKS the gateway reads: the EC and Ed25519 public keys.
        let jwk = |pem: &[u8], alg: Algorithm, kid: &str, ec: bool| {
            let key = if ec { EncodingKey::from_ec_pem(pem) } else { EncodingKey::from_ed_pem(pem) }.unwrap();
            let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
            jwk.common.key_id = Some(kid.to_owned());
            jwk
        };
        let set =
            JwkSet { keys: vec![jwk(&ec, Algorithm::ES256, "es", true), jwk(&ed, Algorithm::EdDSA, "ed", false)] };
        std::fs::write(dir.path().join("jwks.json"), serde_json::to_vec(&set).unwrap()).unwrap();
        Keys { dir, rsa, ec, ed, stranger }
    })
}

fn config(dir: &Path) -> String {
    format!(
        r#"
[jwt]
issuers = ["https://issuer.test"]
audiences = ["protogate"]
algorithms = ["HS256", "RS256", "ES256", "EdDSA"]
keys = [
  {{ kid = "hs", alg = "HS256", secret = "{SECRET}" }},
  {{ kid = "rs", alg = "RS256", pem_file = "{}" }},
]
jwks_file = "{}"
leeway = "5s"
forward_claims = {{ sub = "x-user-id", tenant = "x-tenant" }}

[[policy]]
name = "public reads"
match = {{ path_prefix = "/v1/everything", methods = ["GET"] }}

[[policy]]
name = "shelf writers"
match = {{ grpc = ["protogate.testing.v1.Bookstore/CreateShelf"] }}
auth = "required"
scopes = ["shelves.write"]
claims = {{ tenant = "acme" }}

[[policy]]
name = "everyone else"
auth = "required"
"#,
        dir.join("rsa.pub.pem").display(),
        dir.join("jwks.json").display()
    )
}

async fn harness() -> Harness {
    Harness::start_with(&config(keys().dir.path())).await
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims() -> Value {
    json!({"sub": "user-7", "tenant": "acme", "iss": "https://issuer.test", "aud": "protogate", "exp": now() + 300})
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&keys().rsa).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&keys().ec).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&keys().ed).unwrap(),
        other => panic!("{other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

async fn get_shelf(h: &Harness, token: Option<&str>) -> crate::support::TestResponse {
    let mut request = h.request("GET", "/v1/shelves/1");
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    request.send().await
}

#[tokio::test]
async fn a_valid_token_of_every_kind_of_key_passes_and_its_claims_go_upstream() {
    let h = harness().await;
    for (alg, kid) in [
        (Algorithm::HS256, Some("hs")),
        (Algorithm::RS256, Some("rs")),
        (Algorithm::RS256, None),
        (Algorithm::ES256, Some("es")),
        (Algorithm::EdDSA, Some("ed")),
    ] {
        let response = get_shelf(&h, Some(&sign(alg, kid, &claims()))).await;
        assert_eq!(response.status, 200, "{alg:?} {kid:?}: {:?}", response.body);
        let metadata = h.upstream.last_call().metadata;
        assert_eq!(metadata["x-user-id"], "user-7");
        assert_eq!(metadata["x-tenant"], "acme");
        assert!(metadata["authorization"].to_str().unwrap().starts_with("Bearer "), "forwarded as is");
    }
}

#[tokio::test]
async fn a_missing_token_is_401_with_a_bearer_challenge_and_never_reaches_the_upstream() {
    let h = harness().await;
    let response = get_shelf(&h, None).await;
    let json = response.assert_error(401, 16);
    assert_eq!(json["message"], "a bearer token is required");
    assert_eq!(response.header("www-authenticate"), Some("Bearer realm=\"protogate\""));
    let basic = h.request("GET", "/v1/shelves/1").header("authorization", "Basic dXNlcjpwdw==").send().await;
    basic.assert_error(401, 16);
    assert!(h.upstream.calls().is_empty());
}

#[tokio::test]
async fn every_kind_of_bad_token_is_401_naming_what_is_wrong() {
    let h = harness().await;
    let hour_ago = now() - 3600;
    let none_header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(serde_json::to_string(&claims()).unwrap().as_bytes());
    let other_secret = jsonwebtoken::encode(
        &Header { kid: Some("hs".into()), ..Header::new(Algorithm::HS256) },
        &claims(),
        &EncodingKey::from_secret(b"another secret entirely, 32 bytes").unwrap(),
    )
    .unwrap();
    // The RSA public key used as an HMAC secret: the classic algorithm-confusion attack.
    let public_pem = std::fs::read(keys().dir.path().join("rsa.pub.pem")).unwrap();
    let confused = |kid: Option<&str>| {
        let header = Header { kid: kid.map(str::to_owned), ..Header::new(Algorithm::HS256) };
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&public_pem).unwrap()).unwrap()
    };
    let stranger = {
        let header = Header { kid: Some("es".into()), ..Header::new(Algorithm::ES256) };
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_ec_pem(&keys().stranger).unwrap()).unwrap()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", sign(Algorithm::HS256, Some("hs"), &with(claims(), "exp", json!(hour_ago))), "expired"),
        (
            "not yet valid",
            sign(Algorithm::HS256, Some("hs"), &with(claims(), "nbf", json!(now() + 3600))),
            "not valid yet",
        ),
        (
            "other issuer",
            sign(Algorithm::RS256, Some("rs"), &with(claims(), "iss", json!("https://evil.test"))),
            "issuer",
        ),
        (
            "other audience",
            sign(Algorithm::ES256, Some("es"), &with(claims(), "aud", json!("someone-else"))),
            "audience",
        ),
        (
            "no exp",
            sign(Algorithm::HS256, Some("hs"), &{
                let mut c = claims();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            "exp claim is missing",
        ),
        (
            "no iss, while issuers is set",
            sign(Algorithm::HS256, Some("hs"), &{
                let mut c = claims();
                c.as_object_mut().unwrap().remove("iss");
                c
            }),
            "iss claim is missing",
        ),
        ("wrong secret", other_secret, "signature"),
        ("alg none", format!("{none_header}.{payload}."), "not a well-formed JWT"),
        ("RSA public key as HMAC secret, kid rs", confused(Some("rs")), "no HS256 key with kid \"rs\""),
        ("RSA public key as HMAC secret, no kid", confused(None), "signature"),
        ("a key from another JWKS", stranger, "signature"),
        ("unknown algorithm", sign_with_alg_name("HS384"), "not accepted"),
        ("garbage", "not.a.token".into(), "well-formed"),
        ("oversized", "a".repeat(9000), "longer than 8192 bytes"),
    ];
    for (case, token, expected) in cases {
        let response = get_shelf(&h, Some(&token)).await;
        let json = response.assert_error(401, 16);
        let message = json["message"].as_str().unwrap();
        assert!(message.contains(expected), "{case}: {message}");
        let challenge = response.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer realm=\"protogate\", error=\"invalid_token\""), "{case}: {challenge}");
    }
    // Within the leeway, an expired token still passes.
    let just_expired = sign(Algorithm::HS256, Some("hs"), &with(claims(), "exp", json!(now() - 2)));
    assert_eq!(get_shelf(&h, Some(&just_expired)).await.status, 200);
    assert_eq!(h.upstream.calls().len(), 1, "no refused request reached the upstream");
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token whose header names an algorithm the gateway does not accept.
fn sign_with_alg_name(alg: &str) -> String {
    let header = base64url(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"hs"}}"#).as_bytes());
    let payload = base64url(serde_json::to_string(&claims()).unwrap().as_bytes());
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

#[tokio::test]
async fn missing_scopes_and_claims_are_403() {
    let h = harness().await;
    let create = |token: String| {
        h.request("POST", "/v1/shelves")
            .header("authorization", &format!("Bearer {token}"))
            .json(&json!({"theme": "poetry"}))
    };
    let response = create(sign(Algorithm::HS256, Some("hs"), &claims())).send().await;
    let json = response.assert_error(403, 7);
    assert_eq!(json["message"], "the token lacks scope shelves.write");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"protogate\", error=\"insufficient_scope\", scope=\"shelves.write\"")
    );
    let other_tenant = with(with(claims(), "scope", json!("shelves.write")), "tenant", json!("globex"));
    let json = create(sign(Algorithm::HS256, Some("hs"), &other_tenant)).send().await.assert_error(403, 7);
    assert_eq!(json["message"], "the token lacks claim tenant=acme");
    assert!(h.upstream.calls().is_empty());
    let allowed = with(claims(), "scp", json!(["shelves.read", "shelves.write"]));
    let response = create(sign(Algorithm::HS256, Some("hs"), &allowed)).send().await;
    assert_eq!(response.status, 200, "{:?}", response.body);
}

#[tokio::test]
async fn clients_cannot_spoof_forwarded_claims() {
    let h = harness().await;
    // A public route: no token, and the client's own x-user-id is dropped.
    h.upstream.reply(Reply::json(json!({})));
    let response = h
        .request("GET", "/v1/everything?int32Value=1")
        .header("grpc-metadata-x-user-id", "admin")
        .header("grpc-metadata-x-other", "kept")
        .send()
        .await;
    assert_eq!(response.status, 200);
    let metadata = h.upstream.last_call().metadata;
    assert!(metadata.get("x-user-id").is_none(), "{metadata:?}");
    assert_eq!(metadata["x-other"], "kept");
    // An authenticated route: the token's value wins.
    let response = h
        .request("GET", "/v1/shelves/1")
        .header("authorization", &format!("Bearer {}", sign(Algorithm::EdDSA, Some("ed"), &claims())))
        .header("grpc-metadata-x-user-id", "admin")
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(h.upstream.last_call().metadata.get_all("x-user-id").iter().collect::<Vec<_>>(), ["user-7"]);
}

#[tokio::test]
async fn grpc_clients_get_unauthenticated() {
    let h = harness().await;
    let response = h
        .request("POST", "/protogate.testing.v1.Bookstore/GetShelf")
        .header("content-type", "application/grpc-web+proto")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await;
    assert_eq!(response.status, 200, "gRPC reports failures in its status");
    let status = response.header("grpc-status").map(str::to_owned).unwrap_or_default();
    assert_eq!(status, (Code::Unauthenticated as i32).to_string(), "{:?}", response.headers);
    assert!(h.upstream.calls().is_empty());
}

/// A JWKS endpoint on loopback whose document and health the test controls.
struct JwksServer {
    url: String,
    document: std::sync::Arc<std::sync::Mutex<(u16, String)>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    async fn start(document: String) -> JwksServer {
        let state = std::sync::Arc::new(std::sync::Mutex::new((200, document)));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (state.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (status, body) = served.lock().unwrap().clone();
                    (http::StatusCode::from_u16(status).unwrap(), body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer { url, document: state, fetches }
    }

    fn serve(&self, status: u16, document: String) {
        *self.document.lock().unwrap() = (status, document);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A JWKS document with the public half of an EC key in PEM, under `kid`.
fn jwks_of(pem: &[u8], kid: &str) -> String {
    let mut jwk = Jwk::from_encoding_key(&EncodingKey::from_ec_pem(pem).unwrap(), Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap()
}

fn es256(pem: &[u8], kid: &str) -> String {
    let header = Header { kid: Some(kid.into()), ..Header::new(Algorithm::ES256) };
    jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_ec_pem(pem).unwrap()).unwrap()
}

#[tokio::test]
async fn a_jwks_key_the_gateway_cannot_use_is_skipped_not_fatal() {
    let usable: Value = serde_json::from_str(&jwks_of(&keys().ec, "sig-1")).unwrap();
    let document = json!({"keys": [
        {"kty": "AKP", "kid": "post-quantum", "alg": "ML-DSA-44", "pub": "AAAA"},
        {"kty": "RSA", "kid": "enc-1", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "!!", "y": "!!"},
        usable["keys"][0],
    ]});
    let jwks = JwksServer::start(document.to_string()).await;
    let config = format!(
        "[jwt]\nalgorithms = [\"ES256\"]\njwks_url = \"{}\"\njwks_cooldown = \"0s\"\n\n[[policy]]\nname = \"all\"\nauth = \"required\"\n",
        jwks.url
    );
    let h = Harness::start_with(&config).await;
    let response = get_shelf(&h, Some(&es256(&keys().ec, "sig-1"))).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
}

#[tokio::test]
async fn a_token_without_kid_is_never_tried_against_every_key() {
    // Two HS256 keys, both named: a token that names neither costs no signature check.
    let config = format!(
        r#"[jwt]
algorithms = ["HS256"]
keys = [{{ kid = "old", alg = "HS256", secret = "an older HMAC secret of 32+ bytes" }}, {{ kid = "hs", alg = "HS256", secret = "{SECRET}" }}]

[[policy]]
name = "all"
auth = "required"
"#
    );
    let h = Harness::start_with(&config).await;
    let json = get_shelf(&h, Some(&sign(Algorithm::HS256, None, &claims()))).await.assert_error(401, 16);
    assert!(json["message"].as_str().unwrap().contains("has no kid, and 2 HS256 keys are known"), "{json}");
    assert_eq!(get_shelf(&h, Some(&sign(Algorithm::HS256, Some("hs"), &claims()))).await.status, 200);
}

#[tokio::test]
async fn keys_from_a_jwks_url_follow_a_rotation_and_survive_an_outage() {
    let jwks = JwksServer::start(jwks_of(&keys().ec, "2026-01")).await;
    let config = format!(
        "[jwt]\nalgorithms = [\"ES256\"]\njwks_url = \"{}\"\njwks_cooldown = \"0s\"\n\n[[policy]]\nname = \"all\"\nauth = \"required\"\n",
        jwks.url
    );
    let h = Harness::start_with(&config).await;
    // Fetched at start (or, at the latest, by the first token that needs it).
    assert_eq!(get_shelf(&h, Some(&es256(&keys().ec, "2026-01"))).await.status, 200);

    // Rotation: the provider now signs with a new key, published under a new kid. The first
    // token naming it makes the gateway fetch again.
    jwks.serve(200, jwks_of(&keys().stranger, "2026-02"));
    let before = jwks.fetches();
    assert_eq!(get_shelf(&h, Some(&es256(&keys().stranger, "2026-02"))).await.status, 200);
    assert!(jwks.fetches() > before, "fetched again for the unknown kid");
    let retired = get_shelf(&h, Some(&es256(&keys().ec, "2026-01"))).await;
    assert_eq!(retired.status, 401, "the retired key is gone");

    // Outage: the endpoint fails; keys already known keep working, unknown ones are refused.
    jwks.serve(503, "down".into());
    assert_eq!(get_shelf(&h, Some(&es256(&keys().stranger, "2026-02"))).await.status, 200);
    let unknown = get_shelf(&h, Some(&es256(&keys().ec, "2026-03"))).await;
    let json = unknown.assert_error(401, 16);
    assert!(json["message"].as_str().unwrap().contains("no ES256 key with kid \"2026-03\""), "{json}");
}

#[tokio::test]
async fn a_rate_limit_can_count_by_a_verified_claim() {
    let config = format!(
        "[jwt]\nalgorithms = [\"HS256\"]\nkeys = [ {{ alg = \"HS256\", secret = \"{SECRET}\" }} ]\n\n\
         [[policy]]\nname = \"per user\"\nauth = \"required\"\n\
         rate_limits = [ {{ key = \"claim:sub\", per_hour = 10, burst = 1 }}, {{ key = \"route\", per_hour = 10, burst = 3 }} ]\n"
    );
    let h = Harness::start_with(&config).await;
    let as_user = |sub: &str| sign(Algorithm::HS256, None, &with(claims(), "sub", json!(sub)));
    assert_eq!(get_shelf(&h, Some(&as_user("alice"))).await.status, 200);
    let again = get_shelf(&h, Some(&as_user("alice"))).await;
    assert!(again.assert_error(429, 8)["message"].as_str().unwrap().contains("claim:sub"));
    assert_eq!(get_shelf(&h, Some(&as_user("bob"))).await.status, 200, "another user, another counter");
    // Every limit applies: the route's (3 at once, all users together) is reached too.
    assert_eq!(get_shelf(&h, Some(&as_user("carol"))).await.status, 200);
    let route = get_shelf(&h, Some(&as_user("dave"))).await;
    assert!(route.assert_error(429, 8)["message"].as_str().unwrap().contains("route"));
}

/// Policies that also take the token from a cookie or `?access_token=` (for browsers'
/// `EventSource` and `WebSocket`), beside one that takes it from the header only.
fn browser_config() -> String {
    format!(
        r#"
[jwt]
algorithms = ["HS256"]
keys = [ {{ kid = "hs", alg = "HS256", secret = "{SECRET}" }} ]
forward_claims = {{ sub = "x-user-id" }}

[[policy]]
name = "browser reads"
match = {{ path_prefix = "/v1/shelves", methods = ["GET"] }}
auth = "required"
token_cookie = "protogate_token"
token_query = true

[[policy]]
name = "header only"
auth = "required"
"#
    )
}

#[tokio::test]
async fn a_policy_takes_the_token_from_a_cookie_or_the_query_and_the_query_token_goes_nowhere() {
    let h = Harness::start_with(&browser_config()).await;
    let token = sign(Algorithm::HS256, Some("hs"), &claims());

    let query = h.get(&format!("/v1/shelves/1?access_token={token}")).await;
    assert_eq!(query.status, 200, "{:?}", query.body);
    let call = h.upstream.last_call();
    assert_eq!(call.request, json!({"shelf": "1"}), "access_token is no message field");
    assert_eq!(call.metadata["x-user-id"], "user-7");
    for (name, value) in &call.metadata {
        assert!(!value.as_bytes().windows(token.len()).any(|w| w == token.as_bytes()), "{name} carries the token");
    }

    let cookie = h
        .request("GET", "/v1/shelves/1")
        .header("cookie", &format!("theme=dark; protogate_token={token}"))
        .send()
        .await;
    assert_eq!(cookie.status, 200, "{:?}", cookie.body);

    let twice = h
        .request("GET", &format!("/v1/shelves/1?access_token={token}"))
        .header("authorization", &format!("Bearer {token}"))
        .send()
        .await;
    let json = twice.assert_error(401, 16);
    assert_eq!(
        json["message"],
        "the bearer token is sent both in the Authorization header and as access_token: send it once"
    );

    // A policy that does not name these places does not read them, and the parameter is still
    // taken out of the query.
    let elsewhere = h
        .request("POST", &format!("/v1/shelves?access_token={token}"))
        .header("cookie", &format!("protogate_token={token}"))
        .json(&json!({"theme": "fiction"}))
        .send()
        .await;
    assert_eq!(elsewhere.assert_error(401, 16)["message"], "a bearer token is required");
    assert_eq!(h.upstream.calls().len(), 2, "only the two admitted calls arrived");

    let log = h.gateway.access_log(4).await;
    for line in &log {
        assert!(!line.to_string().contains(&token), "the access log never holds the token: {line}");
    }
}

#[tokio::test]
async fn token_places_need_a_required_policy_and_a_cookie_name() {
    let bad = format!(
        "[jwt]\nalgorithms = [\"HS256\"]\nkeys = [ {{ alg = \"HS256\", secret = \"{SECRET}\" }} ]\n\n\
         [[policy]]\nname = \"open\"\ntoken_query = true\n\n\
         [[policy]]\nname = \"odd\"\nauth = \"required\"\ntoken_cookie = \"a b\"\n"
    );
    let config = protogate::config::Config::from_toml(&bad).unwrap();
    let errors = config.validate();
    let text = format!("{errors:?}");
    assert!(text.contains("policy[0].auth") && text.contains("token_cookie and token_query need auth"), "{text}");
    assert!(text.contains("policy[1].token_cookie") && text.contains("is not a cookie name"), "{text}");
}

#[tokio::test]
async fn the_openapi_document_gives_each_operation_the_security_its_policies_ask() {
    let h = Harness::start_with(&browser_config()).await;
    let document = h.gateway.admin().await.request("GET", "/openapi.json").send().await.json();
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"], json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}));
    assert_eq!(schemes["access_token_query"], json!({"type": "apiKey", "in": "query", "name": "access_token"}));
    assert_eq!(schemes["access_token_cookie"], json!({"type": "apiKey", "in": "cookie", "name": "protogate_token"}));
    let read = &document["paths"]["/v1/shelves/{shelf}"]["get"];
    assert_eq!(
        read["security"],
        json!([{"bearer": []}, {"access_token_query": []}, {"access_token_cookie": []}]),
        "the browser policy's places"
    );
    assert!(read["responses"]["401"].is_object() && read["responses"]["403"].is_object());
    let create = &document["paths"]["/v1/shelves"]["post"];
    assert_eq!(create["security"], json!([{"bearer": []}]), "the header-only policy");
}
