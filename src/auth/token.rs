//! Where a request carries its bearer token: the `Authorization` header (RFC 6750 §2.1) and,
//! where a policy allows it, a cookie or the `access_token` query parameter (§2.3). A browser's
//! `EventSource` and `WebSocket` cannot set headers, so these are the only places they can put
//! one.
//!
//! The query parameter is taken out of the request's URI before anything else reads it: it
//! never becomes a message field, a log line, a cache key or upstream metadata.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue, Uri};

use super::AuthError;

/// The query parameter a token may be sent in (RFC 6750 §2.3).
pub const QUERY_PARAMETER: &str = "access_token";

/// Where besides `Authorization` the policies holding a request let its token be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenPlaces {
    /// A cookie of this name (`token_cookie`).
    pub cookie: Option<String>,
    /// The `access_token` query parameter (`token_query`).
    pub query: bool,
}

impl TokenPlaces {
    /// Only the places both allow: a request held to several policies uses a place only when
    /// every one of them accepts it.
    pub fn narrowed(&self, other: &TokenPlaces) -> TokenPlaces {
        let cookie = self.cookie.clone().filter(|name| other.cookie.as_ref() == Some(name));
        TokenPlaces { cookie, query: self.query && other.query }
    }
}

/// The `access_token` parameters a request's query held, kept in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryToken {
    /// One, decoded.
    One(String),
    /// More than one: which to believe is not the gateway's guess.
    Several,
}

/// Takes every `access_token` parameter out of `uri`'s query, leaving the others as they were
/// sent (still encoded, in order).
pub fn take_query_token(uri: &mut Uri) -> Option<QueryToken> {
    let query = uri.query()?;
    let mut found = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let decoded = form_urlencoded::parse(name.as_bytes()).next().map(|(name, _)| name);
        if decoded.as_deref() != Some(QUERY_PARAMETER) {
            kept.push(pair);
            continue;
        }
        let value = form_urlencoded::parse(pair.as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
        found = Some(match found {
            None => QueryToken::One(value),
            Some(_) => QueryToken::Several,
        });
    }
    let token = found?;
    let rebuilt = match kept.is_empty() {
        true => uri.path().to_owned(),
        false => format!("{}?{}", uri.path(), kept.join("&")),
    };
    let mut parts = std::mem::take(uri).into_parts();
    // Made of the URI's own path and pairs, so it parses; were it not to, the request goes on
    // without its query rather than with the token in it.
    parts.path_and_query = rebuilt.parse().ok().or_else(|| uri_path(&rebuilt));
    *uri = Uri::from_parts(parts).unwrap_or_default();
    Some(token)
}

fn uri_path(rebuilt: &str) -> Option<http::uri::PathAndQuery> {
    rebuilt.split('?').next()?.parse().ok()
}

/// The request's bearer token: from `Authorization`, or from a place `places` allows. A token
/// in both the header and the query is refused (a client "MUST NOT use more than one method",
/// RFC 6750 §2); the cookie, which a browser sends on its own, is read only when neither holds one.
pub fn find<'r>(
    headers: &'r HeaderMap,
    query: Option<&'r QueryToken>,
    places: &TokenPlaces,
) -> Result<Cow<'r, str>, AuthError> {
    let query = query.filter(|_| places.query);
    match (headers.get(AUTHORIZATION), query) {
        (Some(_), Some(_)) => Err(AuthError::TwoTokens),
        (Some(value), None) => bearer_token(value).map(Cow::Borrowed).ok_or(AuthError::NotBearer),
        (None, Some(QueryToken::One(token))) if !token.is_empty() => Ok(Cow::Borrowed(token)),
        (None, Some(QueryToken::One(_))) => Err(AuthError::Invalid { reason: "access_token is empty".into() }),
        (None, Some(QueryToken::Several)) => {
            Err(AuthError::Invalid { reason: "access_token is given more than once".into() })
        }
        (None, None) => places.cookie.as_deref().and_then(|name| cookie(headers, name)).ok_or(AuthError::Missing),
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of cookie `name` in the request's `Cookie` headers (HTTP/2 may split them).
fn cookie<'r>(headers: &'r HeaderMap, name: &str) -> Option<Cow<'r, str>> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        cookie::Cookie::split_parse(line)
            .filter_map(Result::ok)
            .find(|c| c.name() == name && !c.value_trimmed().is_empty())
            .map(|c| Cow::Owned(c.value_trimmed().to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn the_query_token_is_taken_and_the_rest_kept_as_sent() {
        let mut u = uri("/v1/news?topic=a%20b&access_token=t.o.k&page=2");
        assert_eq!(take_query_token(&mut u), Some(QueryToken::One("t.o.k".into())));
        assert_eq!(u, uri("/v1/news?topic=a%20b&page=2"));

        let mut only = uri("http://h/v1/news?access_%74oken=x%2By");
        assert_eq!(take_query_token(&mut only), Some(QueryToken::One("x+y".into())));
        assert_eq!(only, uri("http://h/v1/news"));

        let mut twice = uri("/v1/news?access_token=a&access_token=b");
        assert_eq!(take_query_token(&mut twice), Some(QueryToken::Several));
        assert_eq!(twice.query(), None);

        let mut none = uri("/v1/news?token=a");
        assert_eq!(take_query_token(&mut none), None);
        assert_eq!(none, uri("/v1/news?token=a"));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn the_token_comes_from_one_allowed_place() {
        let all = TokenPlaces { cookie: Some("session".into()), query: true };
        let query = QueryToken::One("from-query".into());
        let bearer = headers(&[("authorization", "Bearer from-header")]);
        let cookies = headers(&[("cookie", "theme=dark; session=from-cookie"), ("cookie", "other=1")]);

        assert_eq!(find(&bearer, None, &all).unwrap(), "from-header");
        assert_eq!(find(&cookies, None, &all).unwrap(), "from-cookie");
        assert_eq!(find(&cookies, Some(&query), &all).unwrap(), "from-query", "the query wins over a cookie");
        assert_eq!(find(&bearer, Some(&query), &all), Err(AuthError::TwoTokens));
        assert_eq!(
            find(&headers(&[]), Some(&QueryToken::Several), &all).unwrap_err().to_string(),
            "the bearer token is invalid: access_token is given more than once"
        );

        let header_only = TokenPlaces::default();
        assert_eq!(find(&cookies, Some(&query), &header_only), Err(AuthError::Missing));
        assert_eq!(find(&headers(&[("cookie", "session=")]), None, &all), Err(AuthError::Missing));
        assert_eq!(find(&headers(&[("authorization", "Basic x")]), None, &all), Err(AuthError::NotBearer));
    }

    #[test]
    fn several_policies_allow_only_the_places_they_share() {
        let cookie = |name: &str| TokenPlaces { cookie: Some(name.into()), query: true };
        assert_eq!(cookie("a").narrowed(&cookie("a")), cookie("a"));
        assert_eq!(cookie("a").narrowed(&cookie("b")), TokenPlaces { cookie: None, query: true });
        assert_eq!(cookie("a").narrowed(&TokenPlaces::default()), TokenPlaces::default());
    }

    #[test]
    fn only_bearer_tokens() {
        let value = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer_token(&value("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&value("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&value("Basic abc")), None);
        assert_eq!(bearer_token(&value("Bearer ")), None);
        assert_eq!(bearer_token(&value("Bearer")), None);
    }
}
