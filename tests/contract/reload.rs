//! Live registration: descriptor files dropped into a watched directory while traffic flows,
//! corrupt ones ignored, removed ones unrouted; the config file read again on change and on
//! `POST /reload`, all or nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Client, Gateway, Traffic, Upstream, example_descriptors, testing_descriptors};

/// Polls `path` until it answers `status`, for at most 10 s; how long that took.
async fn wait_for_status(client: &Client, path: &str, status: u16) -> Duration {
    let start = Instant::now();
    for _ in 0..1000 {
        if client.request("GET", path).send().await.status == status {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("GET {path} did not answer {status} within 10 s");
}

/// Polls the admin `/metrics` until `series` reads `value`, for at most 10 s.
async fn wait_for_sample(admin: &Client, series: &str, value: f64) {
    for _ in 0..1000 {
        let text = String::from_utf8(admin.request("GET", "/metrics").send().await.body.to_vec()).unwrap();
        let sample = text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok());
        if sample == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{series} never read {value} within 10 s");
}

/// A gateway watching `dir`, where the test fixtures' descriptor file is copied first.
async fn watching(dir: &Path, upstream: &Upstream) -> Gateway {
    std::fs::copy(testing_descriptors(), dir.join("bookstore.binpb")).unwrap();
    let toml = format!(
        "[descriptors]\npaths = [{:?}]\nwatch = true\n[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [{:?}]\n",
        dir.display().to_string(),
        upstream.url()
    );
    Gateway::with_config(protogate::config::Config::from_toml(&toml).unwrap()).await
}

fn routes_of(gateway: &Gateway) -> usize {
    gateway.current().table().routes().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_file_dropped_in_is_served_while_traffic_flows() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = watching(dir.path(), &upstream).await;
    let admin = gateway.admin().await;
    let before = routes_of(&gateway);
    assert_eq!(gateway.client.request("GET", "/v1/users/7").send().await.status, 404);

    let traffic = Traffic::start(&gateway.client, "/v1/shelves", 4);
    traffic.run_for(200).await;

    // A brand-new service: its file is copied in (written in place, not renamed).
    std::fs::copy(example_descriptors(), dir.path().join("examples.binpb")).unwrap();
    let took = wait_for_status(&gateway.client, "/v1/users/7", 200).await;
    assert!(took < Duration::from_secs(2), "the new routes answered after {took:?}");
    assert!(upstream.calls().iter().any(|call| call.path == "/example.users.v1.UserService/GetUser"));
    let with_examples = routes_of(&gateway);
    assert!(with_examples > before);

    // A corrupt file changes nothing: the reload is refused and counted, the routes stay.
    std::fs::write(dir.path().join("broken.binpb"), b"\x0a\xff\xff\xff\xff not a descriptor set").unwrap();
    wait_for_sample(&admin, "protogate_descriptor_loads_total{result=\"failed\"}", 1.0).await;
    assert_eq!(routes_of(&gateway), with_examples);
    assert_eq!(gateway.client.request("GET", "/v1/users/7").send().await.status, 200);
    std::fs::remove_file(dir.path().join("broken.binpb")).unwrap();

    // Removing the file removes its routes.
    std::fs::remove_file(dir.path().join("examples.binpb")).unwrap();
    wait_for_status(&gateway.client, "/v1/users/7", 404).await;
    assert_eq!(routes_of(&gateway), before);

    traffic.run_for(1000usize.saturating_sub(traffic.sent())).await;
    let (sent, failures) = traffic.finish().await;
    assert!(sent >= 1000, "{sent} requests");
    assert!(failures.is_empty(), "{} of {sent} requests failed during the reloads: {failures:?}", failures.len());
}

fn write_config(path: &Path, upstream: &Upstream, extra: &str) {
    let toml = format!(
        "[descriptors]\npaths = [{:?}]\nwatch = true\n{extra}\n[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [{:?}]\n",
        testing_descriptors().display().to_string(),
        upstream.url()
    );
    std::fs::write(path, toml).unwrap();
}

async fn wait_for_calls(upstream: &Upstream, client: &Client, path: &str) {
    for _ in 0..1000 {
        let before = upstream.calls().len();
        assert_eq!(client.request("GET", path).send().await.status, 200);
        if upstream.calls().len() > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("requests never reached {} within 10 s", upstream.url());
}

#[tokio::test]
async fn the_config_file_is_read_again_on_change_and_on_post_reload_all_or_nothing() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    write_config(&file, &first, "");
    let gateway = Gateway::with_config_file(&file).await;
    let admin = gateway.admin().await;
    assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200);
    assert_eq!(first.calls().len(), 1);

    // Watched: saving the file moves traffic to the other upstream.
    let replaced = std::sync::Arc::downgrade(&gateway.current());
    write_config(&file, &second, "");
    wait_for_calls(&second, &gateway.client, "/v1/shelves").await;
    wait_for_sample(&admin, "protogate_config_reloads_total{result=\"ok\"}", 1.0).await;
    // Nothing holds on to the gateway it replaced (nor to its upstream connections).
    for _ in 0..1000 {
        if replaced.upgrade().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(replaced.upgrade().is_none(), "the replaced gateway is freed once its requests end");

    // A broken file is refused whole, by the watcher and by POST /reload alike.
    std::fs::write(&file, "[[upstreams]]\nname = \"test\"\nendpoints = [\"not a url\"]\n").unwrap();
    wait_for_sample(&admin, "protogate_config_reloads_total{result=\"failed\"}", 1.0).await;
    let refused = admin.request("POST", "/reload").send().await;
    assert_eq!(refused.status, 400);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["code"], 9);
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("nothing was changed"), "{message}");
    assert!(message.contains("not a url"), "{message}");
    let calls = second.calls().len();
    assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200);
    assert_eq!(second.calls().len(), calls + 1, "the last good configuration still serves");

    // A policy added by POST /reload applies to the next request: one per minute per client.
    write_config(
        &file,
        &second,
        "[[policy]]\nname = \"slow\"\nrate_limits = [{ key = \"ip\", per_minute = 1, burst = 1 }]\n",
    );
    let reloaded = admin.request("POST", "/reload").send().await;
    assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
    let body: Value = serde_json::from_slice(&reloaded.body).unwrap();
    assert_eq!(body["status"], "reloaded");
    assert_eq!(body["routes"].as_u64().unwrap() as usize, routes_of(&gateway));
    assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200);
    assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 429);
    let config = admin.request("GET", "/config").send().await;
    let config: Value = serde_json::from_slice(&config.body).unwrap();
    assert_eq!(config["policy"][0]["name"], "slow", "/config shows the configuration in effect");
}

#[tokio::test]
async fn a_browser_page_cannot_reach_the_admin_listener() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    write_config(&file, &upstream, "");
    let toml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("admin_hosts = [\"gateway-admin.internal\"]\n{toml}")).unwrap();
    let gateway = Gateway::with_config_file(&file).await;
    let admin = gateway.admin().await;

    // A page's fetch or form post: simple, with its Origin. Refused before anything reloads.
    for (name, value) in [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")] {
        let refused = admin.request("POST", "/reload").header(name, value).send().await;
        assert_refused(&refused);
    }
    // DNS rebinding: the attacker's name now points here, so the request is "same-origin".
    let rebound = admin.request("GET", "/config").header("host", "evil.example:9090").send().await;
    let body = assert_refused(&rebound);
    assert!(body["message"].as_str().unwrap().contains("evil.example"), "{body}");
    let rebound_reload = admin.request("POST", "/reload").header("host", "evil.example").send().await;
    assert_refused(&rebound_reload);
    assert_eq!(
        sample_now(&admin, "protogate_config_reloads_total{result=\"ok\"}").await,
        None,
        "no refused request reloaded"
    );

    // Tools: curl's plain POST, a configured name, an address, a preflighted request.
    assert_eq!(admin.request("POST", "/reload").send().await.status, 200);
    let named = admin.request("GET", "/routes").header("host", "Gateway-Admin.internal:9090").send().await;
    assert_eq!(named.status, 200);
    for host in ["127.0.0.1:9090", "[::1]:9090", "localhost"] {
        assert_eq!(admin.request("GET", "/healthz").header("host", host).send().await.status, 200, "{host}");
    }
    let marked =
        admin.request("POST", "/reload").header("origin", "https://ops.example").header("x-protogate-reload", "1");
    assert_eq!(marked.send().await.status, 200);
}

/// A 403 with PERMISSION_DENIED: the admin listener's own error shape.
fn assert_refused(response: &crate::support::TestResponse) -> Value {
    assert_eq!(response.status, 403, "{:?}", response.body);
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["code"], 7, "{body}");
    body
}

/// The value of a metric series now, if it is there.
async fn sample_now(admin: &Client, series: &str) -> Option<f64> {
    let text = String::from_utf8(admin.request("GET", "/metrics").send().await.body.to_vec()).unwrap();
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn a_reload_of_trusted_proxies_reaches_the_access_log() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    write_config(&file, &upstream, "");
    let gateway = Gateway::with_config_file(&file).await;
    let admin = gateway.admin().await;
    let forwarded = || gateway.client.request("GET", "/v1/shelves").header("x-forwarded-for", "203.0.113.9").send();
    assert_eq!(forwarded().await.status, 200);
    assert_eq!(gateway.access_log(1).await[0]["client_ip"], "127.0.0.1", "not a trusted proxy yet");

    write_config(&file, &upstream, "[rate_limit]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    assert_eq!(admin.request("POST", "/reload").send().await.status, 200);
    assert_eq!(forwarded().await.status, 200);
    assert_eq!(gateway.access_log(2).await[1]["client_ip"], "203.0.113.9", "the reloaded rule names the client");
}

/// Writes `config` as a Kubernetes ConfigMap volume does: into a fresh timestamped
/// directory, then one atomic rename of the `..data` link to it; `gateway.toml` itself is a
/// link through `..data` and never changes.
fn configmap_update(dir: &Path, version: u32, config: &str) {
    let data = dir.join(format!("..2026_12_02_{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("gateway.toml"), config).unwrap();
    let temporary = dir.join("..data_tmp");
    std::os::unix::fs::symlink(data.file_name().unwrap(), &temporary).unwrap();
    std::fs::rename(&temporary, dir.join("..data")).unwrap();
    let link = dir.join("gateway.toml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/gateway.toml", &link).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_update_swapping_links_is_followed() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch.toml");
    write_config(&scratch, &first, "");
    configmap_update(dir.path(), 1, &std::fs::read_to_string(&scratch).unwrap());
    let gateway = Gateway::with_config_file(&dir.path().join("gateway.toml")).await;
    assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200);
    assert_eq!(first.calls().len(), 1);

    write_config(&scratch, &second, "");
    configmap_update(dir.path(), 2, &std::fs::read_to_string(&scratch).unwrap());
    wait_for_calls(&second, &gateway.client, "/v1/shelves").await;
}

/// A service described in `.proto` source: comments, an HTTP rule.
const LIBRARY_PROTO: &str = include_str!("../fixtures/library.proto");

#[tokio::test]
async fn a_proto_source_dropped_in_is_compiled_routed_and_described_without_a_restart() {
    // The scripted upstream serves the test fixtures only: it answers this new service's
    // calls UNIMPLEMENTED, naming the method the gateway called.
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = watching(dir.path(), &upstream).await;
    let admin = gateway.admin().await;
    assert_eq!(gateway.client.request("GET", "/v1/library/books/7").send().await.status, 404);

    std::fs::write(dir.path().join("library.proto"), LIBRARY_PROTO).unwrap();
    wait_for_status(&gateway.client, "/v1/library/books/7", 501).await;
    let answer = gateway.client.request("GET", "/v1/library/books/7").send().await;
    assert_eq!(answer.json()["message"], "no method /library.v1.Library/GetBook", "routed to the new method");
    let routes = admin.request("GET", "/routes").send().await.json();
    assert!(routes.as_array().unwrap().iter().any(|r| r["path"] == "/v1/library/books/{id}"), "{routes}");
    let document = admin.request("GET", "/openapi.json").send().await.json();
    let operation = &document["paths"]["/v1/library/books/{id}"]["get"];
    assert_eq!(operation["description"], "Gets one book by its id.", "the comment reaches OpenAPI");
    let book = &document["components"]["schemas"]["library.v1.Book"];
    assert_eq!(book["description"], "A book on a shelf.");
    assert_eq!(book["properties"]["title"]["description"], "Its title, as printed.");
    let tag = document["tags"].as_array().unwrap().iter().find(|t| t["name"] == "library.v1.Library").cloned();
    assert_eq!(tag.unwrap()["description"], "The books of a small library.");

    // A source that does not compile changes nothing, and says where it is wrong.
    let broken = LIBRARY_PROTO.replace("string title = 2;", "string title = 2");
    std::fs::write(dir.path().join("library.proto"), broken).unwrap();
    wait_for_sample(&admin, "protogate_descriptor_loads_total{result=\"failed\"}", 1.0).await;
    let answer = admin.request("POST", "/reload").send().await;
    assert_eq!(answer.status, 400);
    let message = answer.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("library.proto: line 25, column 1: expected ';'"), "{message}");
    assert_eq!(gateway.client.request("GET", "/v1/library/books/7").send().await.status, 501, "still routed");
}
