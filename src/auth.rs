//! Authentication at the edge: bearer JWTs verified against the keys `[jwt]` gives — HMAC
//! secrets, PEM public keys (inline or in files) and JWKS documents — before a request goes
//! anywhere near an upstream.
//!
//! Safe by construction: the algorithms accepted are an explicit list (`none` cannot be
//! named), a token's key is chosen by its `kid` and must be of the token's algorithm (so an RSA
//! public key can never be used as an HMAC secret), `exp` is required, and so is `iss` when
//! `issuers` is set. HMAC secrets are at least 32 bytes (RFC 7518 §3.2), and a JWKS is fetched
//! over TLS unless it is on this host.
//!
//! A bad token costs one signature check: a token names its key by `kid`; one without a `kid`
//! is tried against the keys that have none, or the one key of its algorithm — never against
//! every key in turn.

pub mod jwks;
pub mod token;

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::Value;

use crate::config::{JwtConfig, KeyConfig};
use jwks::JwksSource;
pub use token::{QueryToken, TokenPlaces, take_query_token};

/// Verifies bearer tokens and turns their claims into upstream metadata.
pub struct Verifier {
    keys: Vec<Key>,
    /// Keys fetched from `jwks_url`, if it is set.
    jwks: Option<Arc<JwksSource>>,
    /// One validation per accepted algorithm: jsonwebtoken checks a key against every
    /// algorithm a validation lists, so each lists only its own.
    validations: Vec<(Algorithm, Validation)>,
    forward: Vec<(String, HeaderName)>,
    max_token_bytes: usize,
}

/// One verification key.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    pub(crate) alg: Algorithm,
    key: DecodingKey,
}

/// A verified token's claims.
#[derive(Debug, Clone, Default)]
pub struct Claims(serde_json::Map<String, Value>);

/// Why a request is not authenticated. Each says what a client can fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("a bearer token is required")]
    Missing,
    /// A token both in `Authorization` and in the `access_token` query parameter.
    #[error("the bearer token is sent both in the Authorization header and as access_token: send it once")]
    TwoTokens,
    /// An `Authorization` header that is not a bearer token.
    #[error("the Authorization header is not \"Bearer <token>\"")]
    NotBearer,
    /// A token longer than the limit.
    #[error("the bearer token is longer than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A token that does not verify, and why.
    #[error("the bearer token is invalid: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

impl Verifier {
    /// The verifier `[jwt]` describes, reading its key files. Every problem is reported.
    pub fn build(config: &JwtConfig) -> Result<Verifier, Vec<(String, String)>> {
        let mut errors = validate(config);
        let mut keys = Vec::new();
        for (i, key) in config.keys.iter().enumerate() {
            match inline_key(key) {
                Ok(key) => keys.push(key),
                Err(message) => errors.push((format!("keys[{i}]"), message)),
            }
        }
        if let Some(path) = &config.jwks_file {
            match jwks_file(path) {
                Ok(found) => keys.extend(found),
                Err(message) => errors.push(("jwks_file".into(), message)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let algorithms: Vec<Algorithm> = config.algorithms.iter().filter_map(|a| Algorithm::from_str(a).ok()).collect();
        let jwks = match &config.jwks_url {
            Some(url) => {
                let url: http::Uri = url.parse().map_err(|e| vec![("jwks_url".to_owned(), format!("{url:?}: {e}"))])?;
                let source = JwksSource::start(url, config.jwks_refresh, config.jwks_cooldown, algorithms.clone())
                    .map_err(|e| vec![("jwks_url".to_owned(), e)])?;
                Some(source)
            }
            None => None,
        };
        // Keys of algorithms not accepted can never verify anything.
        keys.retain(|k| algorithms.contains(&k.alg));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if !config.issuers.is_empty() {
            validation.set_issuer(&config.issuers);
            // jsonwebtoken checks `iss` only when present; a token without one is not from
            // any of the issuers.
            validation.required_spec_claims.insert("iss".into());
        }
        if config.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&config.audiences);
            validation.required_spec_claims.insert("aud".into());
        }
        let validations = algorithms
            .into_iter()
            .map(|alg| {
                let mut for_alg = validation.clone();
                for_alg.algorithms = vec![alg];
                (alg, for_alg)
            })
            .collect();
        let forward = config
            .forward_claims
            .iter()
            .filter_map(|(claim, key)| Some((claim.clone(), HeaderName::from_bytes(key.as_bytes()).ok()?)))
            .collect();
        Ok(Verifier { keys, jwks, validations, forward, max_token_bytes: config.max_token_bytes })
    }

    /// The claims of the request's bearer token (see [`token::find`] for where it may be),
    /// once verified.
    pub async fn verify_request(
        &self,
        headers: &HeaderMap,
        query: Option<&QueryToken>,
        places: &TokenPlaces,
    ) -> Result<Claims, AuthError> {
        let token = token::find(headers, query, places)?;
        self.verify(&token).await
    }

    /// The claims of a token, once verified. A token whose key is not known yet makes the
    /// JWKS URL be fetched again (a rotation), within its cooldown.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        match self.verify_with_known_keys(token) {
            Err(Unverified::NoKey(error)) => match &self.jwks {
                Some(jwks) if jwks.refetch().await => {
                    self.verify_with_known_keys(token).map_err(Unverified::into_error)
                }
                _ => Err(error),
            },
            result => result.map_err(Unverified::into_error),
        }
    }

    fn verify_with_known_keys(&self, token: &str) -> Result<Claims, Unverified> {
        if token.len() > self.max_token_bytes {
            return Err(Unverified::Invalid(AuthError::TooLarge { limit: self.max_token_bytes }));
        }
        let invalid = |reason: &str| Unverified::Invalid(AuthError::Invalid { reason: reason.to_owned() });
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&describe(e.kind())))?;
        let Some((_, validation)) = self.validations.iter().find(|(alg, _)| *alg == header.alg) else {
            return Err(invalid(&format!("algorithm {:?} is not accepted", header.alg)));
        };
        let fetched = self.jwks.as_ref().map(|jwks| jwks.keys()).unwrap_or_default();
        let of_alg: Vec<&Key> = self.keys.iter().chain(fetched.iter()).filter(|k| k.alg == header.alg).collect();
        let candidates = candidates(&of_alg, header.kid.as_deref());
        if candidates.is_empty() {
            let reason = match &header.kid {
                Some(kid) => format!("no {:?} key with kid {kid:?} is known", header.alg),
                None if of_alg.is_empty() => format!("no {:?} key is known", header.alg),
                None => format!("the token has no kid, and {} {:?} keys are known: name one", of_alg.len(), header.alg),
            };
            return Err(Unverified::NoKey(AuthError::Invalid { reason }));
        }
        let mut last = String::new();
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return Ok(Claims(data.claims)),
                // Another key of the same kind may be the one; any other failure is final.
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => last = describe(e.kind()),
                Err(e) => return Err(invalid(&describe(e.kind()))),
            }
        }
        Err(invalid(&last))
    }
}

/// The keys a token is tried against (`keys`: those of its algorithm): the ones with its
/// `kid` and those without one; for a token without a `kid`, the keys without one, or the
/// only key there is. Never every key in turn: each costs a signature check.
fn candidates<'k>(keys: &[&'k Key], kid: Option<&str>) -> Vec<&'k Key> {
    let unnamed = || keys.iter().copied().filter(|k| k.kid.is_none());
    match kid {
        Some(kid) => keys.iter().copied().filter(|k| k.kid.as_deref() == Some(kid) || k.kid.is_none()).collect(),
        None if keys.len() == 1 => keys.to_vec(),
        None => unnamed().collect(),
    }
}

/// Why a token did not verify with the keys known now.
enum Unverified {
    /// No key could even be tried: a fetch may bring it.
    NoKey(AuthError),
    /// The token is wrong.
    Invalid(AuthError),
}

impl Unverified {
    fn into_error(self) -> AuthError {
        match self {
            Unverified::NoKey(error) | Unverified::Invalid(error) => error,
        }
    }
}

impl Verifier {
    /// Metadata keys that verified claims fill: a client's own values for them are dropped.
    pub fn forwarded_keys(&self) -> impl Iterator<Item = &HeaderName> {
        self.forward.iter().map(|(_, key)| key)
    }

    /// Sets the forwarded claims on upstream metadata, replacing whatever the client sent
    /// under those keys (with no claims, those keys are only removed).
    pub fn forward(&self, claims: Option<&Claims>, metadata: &mut HeaderMap) {
        for (claim, key) in &self.forward {
            metadata.remove(key);
            let value = claims.and_then(|c| c.text(claim)).and_then(|v| HeaderValue::from_str(&v).ok());
            if let Some(value) = value {
                metadata.insert(key.clone(), value);
            }
        }
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

impl Claims {
    /// The scopes granted: the space-separated `scope` claim, or the `scp` claim (a list or a
    /// space-separated string).
    pub fn scopes(&self) -> HashSet<&str> {
        let mut scopes = HashSet::new();
        for name in ["scope", "scp"] {
            match self.0.get(name) {
                Some(Value::String(text)) => scopes.extend(text.split_whitespace()),
                Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
                _ => {}
            }
        }
        scopes
    }

    /// A claim as it is in the token.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A claim as text: strings as they are, numbers and booleans written out, lists joined
    /// with commas; objects have no text form.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(items) => {
                let texts: Vec<String> = items
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect();
                Some(texts.join(","))
            }
            _ => None,
        }
    }

    /// Whether claim `name` is `value`, or a list holding it.
    pub fn has(&self, name: &str, value: &str) -> bool {
        match self.0.get(name) {
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(value)),
            Some(_) => self.text(name).as_deref() == Some(value),
            None => false,
        }
    }
}

/// What a verification failure means, in words a client can act on.
fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::InvalidIssuer => "the issuer (iss) is not accepted".into(),
        ErrorKind::InvalidAudience => "the audience (aud) is not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the {claim} claim is missing"),
        ErrorKind::InvalidAlgorithm => "the algorithm does not match the key".into(),
        ErrorKind::InvalidClaimFormat(claim) => format!("the {claim} claim is malformed"),
        ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => "the algorithm is not accepted".into(),
        _ => "it is not a well-formed JWT".into(),
    }
}

/// The shortest HMAC secret accepted: the output size of SHA-256 (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;

/// Whether a URL's host is this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Every problem in `[jwt]` that needs no file read, as (key, message).
pub fn validate(config: &JwtConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if config.algorithms.is_empty() {
        errors.push(("algorithms".into(), "list the algorithms tokens may use, e.g. [\"RS256\"]".into()));
    }
    for (i, name) in config.algorithms.iter().enumerate() {
        if Algorithm::from_str(name).is_err() {
            let message = format!(
                "{name:?} is not an accepted algorithm (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
            );
            errors.push((format!("algorithms[{i}]"), message));
        }
    }
    if config.keys.is_empty() && config.jwks_file.is_none() && config.jwks_url.is_none() {
        errors.push(("keys".into(), "no keys: give keys, a jwks_file or a jwks_url".into()));
    }
    if let Some(url) = &config.jwks_url {
        match url.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
            Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some_and(is_loopback) => {}
            Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => errors.push((
                "jwks_url".into(),
                format!("{url:?}: keys fetched over plain http:// could be swapped on the way; use https:// (http:// is for this host only)"),
            )),
            _ => errors.push(("jwks_url".into(), format!("{url:?} is not an https:// URL"))),
        }
    }
    if config.jwks_refresh.is_zero() {
        errors.push(("jwks_refresh".into(), "must be longer than 0".into()));
    }
    for (i, key) in config.keys.iter().enumerate() {
        if key.secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET_BYTES) {
            let message = format!(
                "an HMAC secret must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2); a short one can be guessed offline from any token"
            );
            errors.push((format!("keys[{i}].secret"), message));
        }
        let sources = [key.secret.is_some() || key.secret_file.is_some(), key.pem.is_some(), key.pem_file.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            errors.push((format!("keys[{i}]"), "give exactly one of secret (or secret_file), pem, pem_file".into()));
        }
        match Algorithm::from_str(&key.alg) {
            Ok(alg) if !config.algorithms.contains(&key.alg) => {
                errors.push((format!("keys[{i}].alg"), format!("{alg:?} is not in algorithms")));
            }
            Ok(_) => {}
            Err(_) => errors.push((format!("keys[{i}].alg"), format!("{:?} is not an algorithm", key.alg))),
        }
    }
    for (claim, key) in &config.forward_claims {
        if HeaderName::from_bytes(key.as_bytes()).is_err() || key.starts_with("grpc-") {
            errors.push((format!("forward_claims.{claim}"), format!("{key:?} is not a metadata key")));
        }
    }
    if config.max_token_bytes == 0 {
        errors.push(("max_token_bytes".into(), "must be greater than 0".into()));
    }
    errors
}

fn inline_key(config: &KeyConfig) -> Result<Key, String> {
    let alg = Algorithm::from_str(&config.alg).map_err(|_| format!("{:?} is not an algorithm", config.alg))?;
    // A secret file the config loader did not read (a library caller's config) is read here.
    let from_file = match (&config.secret, &config.secret_file) {
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        _ => None,
    };
    let pem = match (config.secret.as_ref().or(from_file.as_ref()), &config.pem, &config.pem_file) {
        (Some(secret), _, _) => {
            if alg.family() != jsonwebtoken::AlgorithmFamily::Hmac {
                return Err(format!("a secret is an HMAC key, not a {alg:?} key"));
            }
            let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?;
            return Ok(Key { kid: config.kid.clone(), alg, key });
        }
        (None, Some(pem), _) => pem.clone().into_bytes(),
        (None, None, Some(path)) => std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, None, None) => return Err("give exactly one of secret (or secret_file), pem, pem_file".into()),
    };
    let key = match alg.family() {
        jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
        jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
        jsonwebtoken::AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&pem),
        jsonwebtoken::AlgorithmFamily::Hmac => return Err("an HMAC key is a secret, not a PEM".into()),
    }
    .map_err(|e| format!("not a {alg:?} public key in PEM: {e}"))?;
    Ok(Key { kid: config.kid.clone(), alg, key })
}

/// The keys of a JWKS document. A key without `alg` is taken for every algorithm of its
/// type (RSA: RS* and PS*; EC: its curve's; OKP: EdDSA).
fn jwks_file(path: &Path) -> Result<Vec<Key>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    jwks_keys(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// A JWKS document's `keys`, each still JSON: one that does not parse as a key must not take
/// the others with it.
#[derive(serde::Deserialize)]
struct JwksDocument {
    keys: Vec<Value>,
}

/// The keys of a JWKS document. A key the gateway cannot use (an unsupported type or curve, a
/// malformed one) is skipped with a warning: an identity provider that publishes a new kind of
/// key beside its signing keys must not stop every token from verifying. A document with no
/// usable key at all is an error.
pub(crate) fn jwks_keys(document: &[u8]) -> Result<Vec<Key>, String> {
    let document: JwksDocument = serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for (i, value) in document.keys.iter().enumerate() {
        let kid = value.get("kid").and_then(Value::as_str).unwrap_or("-");
        if value.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            tracing::info!(index = i, kid, "JWKS key skipped: it is not a signing key");
            continue;
        }
        let parsed = serde_json::from_value::<Jwk>(value.clone())
            .map_err(|e| e.to_string())
            .and_then(|jwk| DecodingKey::from_jwk(&jwk).map(|key| (jwk, key)).map_err(|e| e.to_string()));
        let (jwk, key) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(index = i, kid, "JWKS key skipped: {e}");
                continue;
            }
        };
        let algs: Vec<Algorithm> = match jwk.common.key_algorithm.and_then(|a| Algorithm::try_from(a).ok()) {
            Some(alg) => vec![alg],
            None => key.family().algorithms().to_vec(),
        };
        for alg in algs {
            keys.push(Key { kid: jwk.common.key_id.clone(), alg, key: key.clone() });
        }
    }
    if keys.is_empty() && !document.keys.is_empty() {
        return Err(format!("none of its {} keys can be used", document.keys.len()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let claims = Claims(serde_json::json!({"scope": "a b", "scp": ["c"]}).as_object().unwrap().clone());
        assert_eq!(claims.scopes(), HashSet::from(["a", "b", "c"]));
        assert_eq!(Claims::default().scopes(), HashSet::new());
    }

    #[test]
    fn claims_as_text() {
        let claims = Claims(
            serde_json::json!({"sub": "u1", "n": 7, "ok": true, "roles": ["a", "b"], "o": {}})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(claims.text("sub").as_deref(), Some("u1"));
        assert_eq!(claims.text("n").as_deref(), Some("7"));
        assert_eq!(claims.text("ok").as_deref(), Some("true"));
        assert_eq!(claims.text("roles").as_deref(), Some("a,b"));
        assert_eq!(claims.text("o"), None);
        assert!(claims.has("roles", "b") && !claims.has("roles", "c") && claims.has("n", "7"));
    }

    fn jwt_config(extra: &str) -> JwtConfig {
        let text = format!("[jwt]\nalgorithms = [\"HS256\"]\n{extra}");
        crate::config::Config::from_toml(&text).unwrap().jwt.unwrap()
    }

    #[test]
    fn short_secrets_and_remote_plain_http_key_sets_are_config_errors() {
        let short = validate(&jwt_config("keys = [{ alg = \"HS256\", secret = \"only-31-bytes-long-secret-value\" }]"));
        assert_eq!(short.len(), 1, "{short:?}");
        assert_eq!(short[0].0, "keys[0].secret");
        assert!(
            validate(&jwt_config("keys = [{ alg = \"HS256\", secret = \"exactly-32-bytes-long-secret-val\" }]"))
                .is_empty()
        );
        for (url, ok) in [
            ("https://issuer.example/jwks.json", true),
            ("http://127.0.0.1:8000/jwks.json", true),
            ("http://[::1]:8000/jwks.json", true),
            ("http://localhost/jwks.json", true),
            ("http://issuer.example/jwks.json", false),
            ("http://10.0.0.1/jwks.json", false),
            ("ftp://issuer.example/jwks.json", false),
        ] {
            let errors = validate(&jwt_config(&format!("jwks_url = \"{url}\"")));
            assert_eq!(errors.is_empty(), ok, "{url}: {errors:?}");
        }
    }

    #[test]
    fn a_token_is_tried_against_its_named_key_or_the_only_one() {
        let key = |kid: Option<&str>| Key {
            kid: kid.map(str::to_owned),
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(b"k").unwrap(),
        };
        let (a, b, unnamed) = (key(Some("a")), key(Some("b")), key(None));
        let kids = |keys: Vec<&Key>| keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>();
        assert_eq!(kids(candidates(&[&a, &b], Some("b"))), [Some("b".to_owned())]);
        assert_eq!(kids(candidates(&[&a, &b, &unnamed], Some("b"))), [Some("b".to_owned()), None]);
        assert!(candidates(&[&a, &b], None).is_empty(), "no kid, several named keys: none tried");
        assert_eq!(kids(candidates(&[&a], None)), [Some("a".to_owned())], "the only key");
        assert_eq!(kids(candidates(&[&a, &b, &unnamed], None)), [None]);
    }

    #[test]
    fn unusable_jwks_keys_are_skipped() {
        let document = br#"{"keys": [
            {"kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AAAA"},
            {"kty": "oct", "kid": "enc", "use": "enc", "k": "c2VjcmV0"},
            {"kty": "oct", "kid": "sig", "alg": "HS256", "k": "c2VjcmV0"}
        ]}"#;
        let keys = jwks_keys(document).unwrap();
        assert_eq!(keys.iter().map(|k| k.kid.as_deref()).collect::<Vec<_>>(), [Some("sig")]);
        let Err(message) = jwks_keys(br#"{"keys": [{"kty": "AKP"}]}"#) else { panic!("no usable key") };
        assert!(message.contains("none of its 1 keys"), "{message}");
        assert!(jwks_keys(b"[]").is_err(), "not a document");
    }
}
