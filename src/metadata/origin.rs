//! Browser origins (`scheme://host[:port]`) and the `[cors]` settings that list them: read by
//! the CORS layer and by the WebSocket door, which browsers let any page open.

use http::{HeaderName, Method, Uri};

use crate::config::CorsConfig;

/// One entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: every origin.
    Any,
    /// One origin, `scheme://host[:port]`.
    Exact(Origin),
    /// `scheme://*.domain[:port]`: any subdomain of `domain`, at any depth (not `domain` itself).
    Subdomain(Origin),
}

/// An origin's parts, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn parse(text: &str) -> Result<Origin, String> {
        let uri: Uri = text.parse().map_err(|e| format!("{text:?} is not an origin: {e}"))?;
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return Err(format!("{text:?} is not an origin: write scheme://host[:port]"));
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") || text.ends_with('/') {
            return Err(format!("{text:?} is not an origin: an origin has no path"));
        }
        Ok(Origin { scheme: scheme.to_ascii_lowercase(), host: host.to_ascii_lowercase(), port: uri.port_u16() })
    }
}

impl OriginPattern {
    /// Parses an `allow_origins` entry.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        if text == "*" {
            return Ok(OriginPattern::Any);
        }
        match text.split_once("://*.") {
            Some((scheme, rest)) => {
                let origin = Origin::parse(&format!("{scheme}://{rest}"))?;
                Ok(OriginPattern::Subdomain(origin))
            }
            None if text.contains('*') => {
                Err(format!("{text:?}: a wildcard may only stand for subdomains, as in \"https://*.example.org\""))
            }
            None => Origin::parse(text).map(OriginPattern::Exact),
        }
    }

    /// Whether a request's `Origin` header value fits.
    pub fn matches(&self, origin: &str) -> bool {
        let Ok(origin) = Origin::parse(origin) else { return false };
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(allowed) => *allowed == origin,
            OriginPattern::Subdomain(parent) => {
                parent.scheme == origin.scheme
                    && parent.port == origin.port
                    && origin.host.strip_suffix(&parent.host).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
            }
        }
    }
}

/// Every problem in `[cors]`, as (key, message).
pub fn validate(config: &CorsConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut any = false;
    for (i, origin) in config.allow_origins.iter().enumerate() {
        match OriginPattern::parse(origin) {
            Ok(pattern) => any |= pattern == OriginPattern::Any,
            Err(message) => errors.push((format!("allow_origins[{i}]"), message)),
        }
    }
    if config.allow_origins.is_empty() {
        errors.push(("allow_origins".into(), "no origins: list the origins allowed, or remove [cors]".into()));
    }
    if any && config.allow_credentials {
        let message = "\"*\" with allow_credentials would let any site act as the user: list the origins".into();
        errors.push(("allow_origins".into(), message));
    }
    for (i, method) in config.allow_methods.iter().enumerate() {
        if Method::from_bytes(method.as_bytes()).is_err() {
            errors.push((format!("allow_methods[{i}]"), format!("{method:?} is not an HTTP method")));
        }
    }
    let names = config.allow_headers.iter().map(|h| ("allow_headers", h));
    for (i, (key, name)) in names.chain(config.expose_headers.iter().map(|h| ("expose_headers", h))).enumerate() {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push((format!("{key}[{i}]"), format!("{name:?} is not a header name")));
        }
    }
    errors
}
