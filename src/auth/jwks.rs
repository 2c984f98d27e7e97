//! Keys from a JWKS URL: fetched when the gateway starts, refreshed every `jwks_refresh`, and
//! fetched again (at most once per `jwks_cooldown`) when a token names a `kid` not yet known —
//! which is how a key rotation reaches the gateway before the next refresh. A fetch that fails
//! keeps the keys already known, so an identity provider that is briefly down locks nobody out.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::auth::Key;

/// The most a JWKS document may weigh.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The keys of one JWKS URL, as last fetched.
pub struct JwksSource {
    url: Uri,
    client: HttpsClient,
    keys: RwLock<Arc<Vec<Key>>>,
    /// When the last fetch was tried; refetches on an unknown `kid` wait for the cooldown.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    cooldown: Duration,
    accept: Vec<jsonwebtoken::Algorithm>,
}

impl JwksSource {
    /// A source for `url`, fetched in the background now and every `refresh`. Must run inside
    /// a tokio runtime.
    pub fn start(
        url: Uri,
        refresh: Duration,
        cooldown: Duration,
        accept: Vec<jsonwebtoken::Algorithm>,
    ) -> Result<Arc<JwksSource>, String> {
        let client = Client::builder(TokioExecutor::new()).build(crate::tls::https_connector()?);
        let source = Arc::new(JwksSource {
            url,
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_attempt: tokio::sync::Mutex::new(None),
            cooldown,
            accept,
        });
        tokio::spawn(refresh_every(Arc::downgrade(&source), refresh));
        Ok(source)
    }

    /// The keys as last fetched.
    pub fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// Fetches again unless the last attempt is more recent than the cooldown; true if the
    /// keys were replaced.
    pub async fn refetch(&self) -> bool {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.cooldown) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetch().await
    }

    async fn fetch(&self) -> bool {
        match tokio::time::timeout(FETCH_TIMEOUT, self.download()).await {
            Ok(Ok(keys)) => {
                let count = keys.len();
                if let Ok(mut current) = self.keys.write() {
                    *current = Arc::new(keys);
                }
                tracing::info!("fetched {count} keys from {}", self.url);
                true
            }
            Ok(Err(e)) => {
                tracing::warn!("JWKS {} not fetched, the keys already known stay: {e}", self.url);
                false
            }
            Err(_) => {
                tracing::warn!("JWKS {} not fetched within {FETCH_TIMEOUT:?}, the keys already known stay", self.url);
                false
            }
        }
    }

    async fn download(&self) -> Result<Vec<Key>, String> {
        let response = self.client.get(self.url.clone()).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("it answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let mut keys = crate::auth::jwks_keys(&body)?;
        keys.retain(|k| self.accept.contains(&k.alg));
        Ok(keys)
    }
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource").field("url", &self.url.to_string()).finish_non_exhaustive()
    }
}

/// Fetches at once, then every `refresh`, while the source is in use.
async fn refresh_every(source: std::sync::Weak<JwksSource>, refresh: Duration) {
    let mut every = tokio::time::interval(refresh);
    loop {
        every.tick().await;
        let Some(source) = source.upgrade() else { return };
        *source.last_attempt.lock().await = Some(Instant::now());
        source.fetch().await;
    }
}
