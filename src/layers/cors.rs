//! CORS for browsers: which origins may call, answered at the edge (a preflight never reaches
//! an upstream), with no cross-origin access at all unless `[cors]` is configured.
//!
//! tower-http's `CorsLayer` speaks the protocol; this module turns `[cors]` into it and adds
//! what a gateway needs on top: wildcard-subdomain origins (`https://*.example.org`), and
//! exposing the `Grpc-Metadata-*` and `Grpc-Trailer-*` headers each response actually carries
//! (CORS has no prefix wildcard, so that list is made per response).

use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS};
use http::{HeaderName, HeaderValue, Method, Response};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::config::CorsConfig;
use crate::metadata::origin::OriginPattern;
use crate::metadata::{METADATA_PREFIX, TRAILER_PREFIX};

/// Headers every allowed origin may read, with the request id header: the gRPC status, and
/// the rate limits (a page can pace itself only if it can read them).
const ALWAYS_EXPOSED: [HeaderName; 5] = [
    HeaderName::from_static("grpc-status"),
    HeaderName::from_static("grpc-message"),
    HeaderName::from_static("ratelimit-policy"),
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("retry-after"),
];

/// The CORS layer for a validated `[cors]`.
pub fn layer(config: &CorsConfig, request_id: &HeaderName) -> CorsLayer {
    let patterns: Vec<OriginPattern> =
        config.allow_origins.iter().filter_map(|o| OriginPattern::parse(o).ok()).collect();
    let origins = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
        origin.to_str().is_ok_and(|origin| patterns.iter().any(|p| p.matches(origin)))
    });
    let methods: Vec<Method> =
        config.allow_methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect();
    let headers = if config.allow_headers.is_empty() {
        AllowHeaders::mirror_request()
    } else {
        AllowHeaders::list(config.allow_headers.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()))
    };
    let exposed = ALWAYS_EXPOSED
        .into_iter()
        .chain([request_id.clone()])
        .chain(config.expose_headers.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()));
    let layer = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(AllowMethods::list(methods))
        .allow_headers(headers)
        .expose_headers(ExposeHeaders::list(exposed))
        .allow_credentials(config.allow_credentials);
    match config.max_age {
        Some(max_age) => layer.max_age(max_age),
        None => layer,
    }
}

/// Finishes a response's CORS headers: none at all for an origin that is not allowed
/// (tower-http grants credentials and exposes headers whatever the origin, which tells a
/// refused page what it may not have), and for an allowed one the `Grpc-Metadata-*` and
/// `Grpc-Trailer-*` headers the response carries added to its `Access-Control-Expose-Headers`.
pub fn finish<B>(mut response: Response<B>) -> Response<B> {
    if !response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
        let granted: Vec<HeaderName> =
            response.headers().keys().filter(|name| name.as_str().starts_with("access-control-")).cloned().collect();
        for name in granted {
            response.headers_mut().remove(name);
        }
        return response;
    }
    let names: Vec<&str> = response
        .headers()
        .keys()
        .map(HeaderName::as_str)
        .filter(|name| name.starts_with(METADATA_PREFIX) || name.starts_with(TRAILER_PREFIX))
        .collect();
    if names.is_empty() {
        return response;
    }
    let mut exposed: Vec<String> = response
        .headers()
        .get_all(ACCESS_CONTROL_EXPOSE_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    exposed.extend(names.into_iter().map(str::to_owned));
    if let Ok(value) = HeaderValue::from_str(&exposed.join(",")) {
        response.headers_mut().insert(ACCESS_CONTROL_EXPOSE_HEADERS, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_as_subdomains() {
        let exact = OriginPattern::parse("https://app.example").unwrap();
        assert!(exact.matches("https://app.example"));
        assert!(exact.matches("https://APP.example"));
        assert!(!exact.matches("http://app.example"), "another scheme");
        assert!(!exact.matches("https://app.example:8443"), "another port");
        assert!(!exact.matches("https://evil-app.example"));
        assert!(!exact.matches("null"));

        let sub = OriginPattern::parse("https://*.example.org").unwrap();
        assert!(sub.matches("https://a.example.org"));
        assert!(sub.matches("https://a.b.example.org"));
        assert!(!sub.matches("https://example.org"), "not the domain itself");
        assert!(!sub.matches("https://evilexample.org"));
        assert!(!sub.matches("https://a.example.org.evil.com"));
        assert!(!sub.matches("http://a.example.org"));

        let port = OriginPattern::parse("http://*.local.test:3000").unwrap();
        assert!(port.matches("http://ui.local.test:3000"));
        assert!(!port.matches("http://ui.local.test"));
        assert!(OriginPattern::parse("*").unwrap().matches("https://anything.example"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in
            ["app.example", "https://app.example/path", "https://a*.example", "https://*", "https://app.example/"]
        {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_origin_with_credentials_is_refused() {
        let config = CorsConfig { allow_origins: vec!["*".into()], allow_credentials: true, ..CorsConfig::default() };
        let errors = crate::metadata::origin::validate(&config);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "allow_origins");
        let config = CorsConfig { allow_methods: vec!["GE T".into()], ..CorsConfig::default() };
        let keys: Vec<String> = crate::metadata::origin::validate(&config).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["allow_origins", "allow_methods[0]"]);
    }
}
