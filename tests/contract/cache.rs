//! The response cache: hits and misses, ETag and 304, `Cache-Control: no-cache`, vary headers,
//! private answers kept per user, and concurrent misses making one upstream call.

use std::time::Duration;

use serde_json::json;
use tonic::Code;

use crate::support::{Gateway, Harness, Redis, Reply, Upstream, config as gateway_config, hs256_bearer, hs256_jwt};

const SECRET: &str = "a cache test HMAC secret, 32 bytes";

fn config() -> String {
    format!(
        r#"
{}
[[policy]]
name = "private"
match = {{ path_prefix = "/v1/books" }}
auth = "required"
cache = {{ ttl = "60s" }}

[[policy]]
name = "public"
match = {{ path_prefix = "/v1/shelves" }}
cache = {{ ttl = "60s", vary = ["Accept-Language"] }}
"#,
        hs256_jwt(SECRET)
    )
}

fn token(subject: &str) -> String {
    hs256_bearer(SECRET, subject)
}

#[tokio::test]
async fn a_second_get_is_a_hit_with_the_same_etag_and_if_none_match_is_304() {
    let h = Harness::start_with(&config()).await;
    h.upstream.script(|_| Reply::json(json!({"id": "1", "theme": "poetry"})));
    let first = h.get("/v1/shelves/1").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.header("cache-control"), Some("max-age=60"));
    let etag = first.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let second = h.get("/v1/shelves/1").await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.header("etag"), Some(etag.as_str()));
    assert_eq!(second.json(), first.json());
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(h.upstream.calls().len(), 1, "served from the cache");

    let unchanged = h.request("GET", "/v1/shelves/1").header("if-none-match", &etag).send().await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()));

    // no-cache goes to the upstream and stores what it answers.
    let fresh = h.request("GET", "/v1/shelves/1").header("cache-control", "no-cache").send().await;
    assert_eq!((fresh.status.as_u16(), fresh.header("x-cache")), (200, Some("MISS")));
    assert_eq!(h.upstream.calls().len(), 2);
    // Another query, another language: other entries.
    assert_eq!(h.get("/v1/shelves/1?fields=id").await.header("x-cache"), Some("MISS"));
    let french = h.request("GET", "/v1/shelves/1").header("accept-language", "fr").send().await;
    assert_eq!(french.header("x-cache"), Some("MISS"));
    let french = h.request("GET", "/v1/shelves/1").header("accept-language", "fr").send().await;
    assert_eq!(french.header("x-cache"), Some("HIT"));
    assert_eq!(h.upstream.calls().len(), 4);
}

#[tokio::test]
async fn errors_are_not_cached_and_credentials_the_policy_did_not_check_bypass_it() {
    let h = Harness::start_with(&config()).await;
    h.upstream.script(|_| Reply::status(Code::NotFound, "no shelf 9"));
    h.get("/v1/shelves/9").await.assert_error(404, 5);
    h.get("/v1/shelves/9").await.assert_error(404, 5);
    assert_eq!(h.upstream.calls().len(), 2);

    h.upstream.script(|_| Reply::json(json!({"id": "1"})));
    let credentials = [
        ("authorization", "Bearer someone"),
        ("cookie", "session=1"),
        ("proxy-authorization", "Basic dTpw"),
        ("grpc-metadata-authorization", "Bearer someone"),
        ("grpc-metadata-cookie", "session=1"),
    ];
    for (name, value) in credentials {
        for _ in 0..2 {
            let response = h.request("GET", "/v1/shelves/1").header(name, value).send().await;
            assert_eq!(response.status, 200);
            assert_eq!(response.header("x-cache"), None, "{name} may change the answer: not cached");
        }
    }
    assert_eq!(h.upstream.calls().len(), 2 + 2 * credentials.len());
    assert_eq!(h.get("/v1/shelves/1").await.header("x-cache"), Some("MISS"), "nothing was stored for them");
}

#[tokio::test]
async fn answers_name_what_they_vary_on_and_the_host_is_part_of_the_key() {
    let h = Harness::start_with(&config()).await;
    h.upstream.script(|call| {
        let host = call.metadata.get("x-forwarded-host").map(|v| v.to_str().unwrap().to_owned());
        match call.path.contains("GetBook") {
            true => Reply::json(json!({"name": "books/1", "title": host})),
            false => Reply::json(json!({"id": "1", "theme": host})),
        }
    });
    let public = h.get("/v1/shelves/1").await;
    assert_eq!(public.header("vary"), Some("accept-language"));
    let private = h.request("GET", "/v1/books/1").header("authorization", &token("alice")).send().await;
    assert_eq!(private.header("vary"), Some("authorization"));

    let poisoned = h.request("GET", "/v1/shelves/2").header("host", "evil.example").send().await;
    assert_eq!(poisoned.json()["theme"], "evil.example");
    let honest = h.get("/v1/shelves/2").await;
    assert_eq!(honest.header("x-cache"), Some("MISS"), "another host, another entry");
    assert_ne!(honest.json()["theme"], "evil.example");
    let spoofed = h.request("GET", "/v1/shelves/2").header("x-forwarded-host", "evil.example").send().await;
    assert_eq!(spoofed.header("x-cache"), Some("HIT"), "an untrusted X-Forwarded-Host changes nothing upstream");
    assert_eq!(spoofed.json(), honest.json());
}

#[tokio::test]
async fn a_private_answer_is_never_served_to_another_user() {
    let h = Harness::start_with(&config()).await;
    h.upstream.script(|call| {
        let user = call.metadata.get("authorization").map(|v| v.len()).unwrap_or_default();
        Reply::json(json!({"name": "books/1", "title": format!("for a token of {user} bytes")}))
    });
    let (alice, bob) = (token("alice"), token("bob-the-second"));
    let first = h.request("GET", "/v1/books/1").header("authorization", &alice).send().await;
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.header("cache-control"), Some("private, max-age=60"), "no shared cache downstream keeps it");
    let other = h.request("GET", "/v1/books/1").header("authorization", &bob).send().await;
    assert_eq!(other.header("x-cache"), Some("MISS"), "bob never gets alice's answer");
    assert_ne!(other.json(), first.json());
    let again = h.request("GET", "/v1/books/1").header("authorization", &alice).send().await;
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(again.json(), first.json());
    assert_eq!(h.upstream.calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_make_one_upstream_call() {
    let h = Harness::start_with(&config()).await;
    h.upstream.script(|_| Reply::json(json!({"id": "5", "theme": "slow"})).delay(Duration::from_millis(300)));
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let client = h.gateway.client.clone();
            tokio::spawn(async move {
                let response = client.request("GET", "/v1/shelves/5").send().await;
                (response.status.as_u16(), response.header("x-cache").map(str::to_owned), response.json())
            })
        })
        .collect();
    let mut hits = 0;
    for request in requests {
        let (status, cache, body) = request.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, json!({"id": "5", "theme": "slow"}));
        hits += usize::from(cache.as_deref() == Some("HIT"));
    }
    assert_eq!(h.upstream.calls().len(), 1, "one upstream call for 100 concurrent misses");
    assert_eq!(hits, 99);
    let admin = h.gateway.admin().await;
    let metrics = String::from_utf8(admin.request("GET", "/metrics").send().await.body.to_vec()).unwrap();
    assert!(metrics.contains("protogate_cache_lookups_total{result=\"hit\"} 99"), "{metrics}");
    assert!(metrics.contains("protogate_cache_lookups_total{result=\"miss\"} 1"), "{metrics}");
}

/// Two replicas sharing Redis, in front of one upstream.
async fn replicas(redis_url: &str) -> (Upstream, Gateway, Gateway) {
    let upstream = Upstream::start().await;
    let upstreams =
        format!("[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\n", upstream.url());
    let settings = format!("{}\n[cache]\nbackend = \"redis\"\nredis_url = \"{redis_url}\"\n", config());
    let a = Gateway::with_config(gateway_config(&settings, &upstreams)).await;
    let b = Gateway::with_config(gateway_config(&settings, &upstreams)).await;
    (upstream, a, b)
}

#[tokio::test]
async fn with_redis_one_replicas_answer_serves_the_others() {
    // Behind one load balancer, every replica is asked for the same host.
    const HOST: &str = "api.example.com";
    let redis = Redis::start().await;
    let (upstream, a, b) = replicas(&redis.url()).await;
    upstream.script(|call| match call.path.contains("GetBook") {
        true => Reply::json(json!({"name": "books/1", "title": "for one reader"})),
        false => Reply::json(json!({"id": "1", "theme": "poetry"})),
    });
    let first = a.client.request("GET", "/v1/shelves/1").header("host", HOST).send().await;
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let etag = first.header("etag").unwrap().to_owned();

    let other = b.client.request("GET", "/v1/shelves/1").header("host", HOST).send().await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-cache"), Some("HIT"), "the other replica found it in Redis");
    assert_eq!(other.header("etag"), Some(etag.as_str()));
    assert_eq!(other.json(), first.json());
    assert_eq!(other.header("content-type"), Some("application/json"));
    let max_age: u64 = other.header("cache-control").unwrap().trim_start_matches("max-age=").parse().unwrap();
    assert!((59..=60).contains(&max_age), "what is left of the ttl: {max_age}");
    let unchanged =
        b.client.request("GET", "/v1/shelves/1").header("host", HOST).header("if-none-match", &etag).send().await;
    assert_eq!(unchanged.status, 304);
    assert_eq!(upstream.calls().len(), 1, "one upstream call for both replicas");

    // A private answer is shared across replicas only with the same user.
    let book_for = |gateway: &Gateway, user: &str| {
        gateway.client.request("GET", "/v1/books/1").header("host", HOST).header("authorization", &token(user)).send()
    };
    let alice = book_for(&a, "alice").await;
    assert_eq!(alice.header("x-cache"), Some("MISS"));
    let alice_again = book_for(&b, "alice").await;
    assert_eq!(alice_again.header("x-cache"), Some("HIT"));
    assert_eq!(alice_again.header("cache-control"), Some("private, max-age=60"));
    let bob = book_for(&b, "bob").await;
    assert_eq!(bob.header("x-cache"), Some("MISS"), "never alice's answer");
    assert_eq!(upstream.calls().len(), 3);

    // no-cache on one replica refreshes the shared answer for the other.
    upstream.script(|_| Reply::json(json!({"id": "1", "theme": "prose"})));
    let fresh =
        a.client.request("GET", "/v1/shelves/2").header("host", HOST).header("cache-control", "no-cache").send().await;
    assert_eq!(fresh.json()["theme"], "prose");
    let seen = b.client.request("GET", "/v1/shelves/2").header("host", HOST).send().await;
    assert_eq!((seen.header("x-cache"), seen.json()["theme"].clone()), (Some("HIT"), json!("prose")));
}

#[tokio::test]
async fn with_redis_down_requests_are_answered_from_the_upstream() {
    let closed = Upstream::closed_url().await.replace("http://", "redis://");
    let (upstream, a, b) = replicas(&closed).await;
    upstream.script(|_| Reply::json(json!({"id": "1", "theme": "poetry"})));
    for gateway in [&a, &b] {
        let response = gateway.client.request("GET", "/v1/shelves/1").send().await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-cache"), Some("MISS"));
        // Each replica still keeps its own answers.
        let again = gateway.client.request("GET", "/v1/shelves/1").send().await;
        assert_eq!(again.header("x-cache"), Some("HIT"));
    }
    assert_eq!(upstream.calls().len(), 2);
}
