//! The docs page: every route the gateway serves, with its parameters, request and answer
//! shapes and examples, and a "try it" form that calls the gateway. A page of our own,
//! compiled into the binary: it works offline and loads nothing from a CDN. It renders the
//! OpenAPI document served beside it (`/docs/openapi.json`), so it follows reloads too.

use axum::response::{Html, IntoResponse, Response};
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY};

const PAGE: &str = include_str!("docs.html");

/// The page, its "try it" requests sent under `try_base` (`/docs/try` on the admin listener,
/// which hands them to the public router; nothing on the public listener itself).
pub fn page(try_base: &str) -> Response {
    let body = PAGE.replacen("<body>", &format!("<body data-try-base=\"{try_base}\">"), 1);
    let mut response = Html(body).into_response();
    let headers = response.headers_mut();
    // Its own script and styles only; requests to this origin only.
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
        ),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
