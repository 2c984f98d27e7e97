//! What a platform team deploys: the OCI image `scripts/image` builds, run from its own root
//! filesystem, and the Kubernetes manifests under `deploy/kubernetes`, rendered by kustomize
//! and validated against the Kubernetes schemas.
//!
//! Containers cannot run on the CI machines, so the image's filesystem is run under `chroot`
//! as the image's user, with the image's command. `scripts/test` installs buildah, kubectl and
//! kubernetes-validate and sets `PROTOGATE_REQUIRE_DEPLOY=1` (as root), which makes a missing
//! tool a failure; elsewhere the tests say what they skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

#[path = "../examples/services/mod.rs"]
mod services;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use support::Client;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Whether `tool` runs here; when it does not, the test is skipped unless the run requires it.
fn have(tool: &str, needs_root: bool) -> bool {
    let runs = Command::new(tool).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    let root = !needs_root || Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if runs && root {
        return true;
    }
    assert!(
        std::env::var_os("PROTOGATE_REQUIRE_DEPLOY").is_none(),
        "PROTOGATE_REQUIRE_DEPLOY is set but {tool} is missing{}",
        if root { "" } else { " (or this is not root)" }
    );
    eprintln!("skipped: {tool} is not installed{}", if needs_root { " or this is not root" } else { "" });
    false
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// buildah with its own storage in `store`, so tests leave nothing in the machine's.
struct Buildah {
    store: tempfile::TempDir,
    containers: Vec<String>,
}

impl Buildah {
    fn command(&self) -> Command {
        let mut command = Command::new("buildah");
        let root = self.store.path();
        command.arg("--root").arg(root.join("root")).arg("--runroot").arg(root.join("run"));
        command
    }

    /// The root filesystem of a new container of `image`.
    fn mount(&mut self, image: &str) -> PathBuf {
        let container = run(self.command().args(["from", "--pull-never", image])).trim().to_owned();
        self.containers.push(container.clone());
        PathBuf::from(run(self.command().args(["mount", &container])).trim())
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = self.command().args(["rm", container]).output();
        }
    }
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_image_serves_the_demo_from_its_own_root_filesystem() {
    if !have("buildah", true) || !have("chroot", true) {
        return;
    }
    let mut buildah = Buildah { store: tempfile::tempdir().unwrap(), containers: Vec::new() };
    let tag = "localhost/protogate:deploy-test";
    run(Command::new(Path::new(ROOT).join("scripts/image"))
        .args(["--binary", env!("CARGO_BIN_EXE_protogate"), "--tag", tag])
        .env("BUILDAH_ROOT", buildah.store.path()));

    // The image's configuration, as a runtime reads it.
    let inspect: Value =
        serde_json::from_str(&run(buildah.command().args(["inspect", "--type", "image", tag]))).unwrap();
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"], "65532:65532", "not root");
    assert_eq!(strings(&config["Entrypoint"]), ["/usr/local/bin/protogate"]);
    assert_eq!(strings(&config["Cmd"]), ["serve", "--config", "/etc/protogate/config/gateway.toml"]);
    let ports: Vec<&String> = config["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["8080/tcp", "9090/tcp"]);
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "protogate");
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(inspect["OCIv1"]["rootfs"]["diff_ids"].as_array().unwrap().len(), 1, "one layer, from scratch");

    // Its files: the binary, its libraries, CA certificates, the user, the default config.
    let rootfs = buildah.mount(tag);
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("protogate:x:65532:65532:"), "{passwd}");
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    assert!(!rootfs.join("bin/sh").exists(), "no shell");
    let default_config = std::fs::read_to_string(rootfs.join("etc/protogate/config/gateway.toml")).unwrap();
    assert!(default_config.contains("listen = \"0.0.0.0:8080\""), "{default_config}");
    assert!(default_config.contains("admin_listen = \"0.0.0.0:9090\""), "{default_config}");

    // The demo's descriptors mounted where the image reads them, and the example users service.
    std::fs::copy(
        Path::new(ROOT).join("descriptors/examples.binpb"),
        rootfs.join("etc/protogate/descriptors/examples.binpb"),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users = listener.local_addr().unwrap();
    tokio::spawn(services::serve(listener, Some(services::Users::seeded()), None, std::future::pending()));

    // The image's entrypoint and command, as its user; only the addresses are moved to free
    // loopback ports (the test shares the machine's network).
    let mut gateway = tokio::process::Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(&rootfs)
        .args(strings(&config["Entrypoint"]))
        .args(strings(&config["Cmd"]))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--upstream")
        .arg(format!("http://{users}"))
        .env_clear()
        .envs(strings(&config["Env"]).into_iter().filter_map(|pair| pair.split_once('=')))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(gateway.stderr.take().unwrap()).lines();
    let (addr, admin) = support::announced_addresses(&mut lines).await;
    let admin = admin.expect("the admin listener starts with the image's config");

    let admin = Client::new(admin.parse().unwrap());
    assert_eq!(admin.request("GET", "/healthz").send().await.status, 200);
    assert_eq!(admin.request("GET", "/readyz").send().await.status, 200);
    let client = Client::new(addr.parse().unwrap());
    let ada = client.request("GET", "/v1/users/1").send().await;
    assert_eq!(ada.status, 200, "{}", ada.text());
    assert_eq!(ada.json()["displayName"], "Ada Lovelace");
    gateway.kill().await.unwrap();
}

/// `kubectl kustomize DIR`, as documents.
fn render(dir: &str) -> (String, Vec<serde_json::Value>) {
    let yaml = run(Command::new("kubectl").args(["kustomize", &format!("{ROOT}/deploy/kubernetes/{dir}")]));
    let documents = serde_norway::Deserializer::from_str(&yaml)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    (yaml, documents)
}

fn object<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Validates rendered manifests against the Kubernetes schemas, rejecting unknown fields.
fn validate(yaml: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    run(Command::new("kubernetes-validate").arg("--strict").arg("--quiet").arg(file.path()));
}

#[test]
fn the_kubernetes_manifests_render_and_validate() {
    if !have("kubectl", false) || !have("kubernetes-validate", false) {
        return;
    }
    let (yaml, base) = render("base");
    validate(&yaml);
    let kinds: Vec<&str> = base.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in ["Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }

    let pod = &object(&base, "Deployment", "protogate")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe} is on the admin port");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let ports: Vec<(&str, i64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert_eq!(ports, [("http", 8080), ("admin", 9090)], "the image's ports");
    let mounts: Vec<&str> =
        container["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    assert_eq!(mounts, ["/etc/protogate/config", "/etc/protogate/descriptors", "/etc/protogate/secrets"]);
    assert!(container["volumeMounts"].as_array().unwrap().iter().all(|m| m.get("subPath").is_none()));
    assert_eq!(pod["volumes"][2]["secret"]["secretName"], "protogate-secrets");

    // The configuration the ConfigMap carries is one the gateway accepts, and the grace period
    // covers its shutdown delay and drain.
    let gateway_toml = object(&base, "ConfigMap", "protogate-config")["data"]["gateway.toml"].as_str().unwrap();
    let config = protogate::config::Config::from_toml(gateway_toml).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(config.listen.port(), 8080);
    assert_eq!(config.admin_listen.map(|a| a.port()), Some(9090));
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(Duration::from_secs(grace) > config.shutdown_delay + config.drain_timeout);
    let probe = &container["readinessProbe"];
    let noticed = probe["periodSeconds"].as_u64().unwrap() * probe["failureThreshold"].as_u64().unwrap();
    assert!(Duration::from_secs(noticed) < config.shutdown_delay, "readiness fails before the listener closes");

    // The descriptors it ships are the demo's.
    let shipped = std::fs::read(format!("{ROOT}/deploy/kubernetes/base/descriptors/examples.binpb")).unwrap();
    assert_eq!(
        shipped,
        std::fs::read(format!("{ROOT}/descriptors/examples.binpb")).unwrap(),
        "copy descriptors/examples.binpb to deploy/kubernetes/base/descriptors/"
    );

    let (yaml, redis) = render("overlays/redis");
    validate(&yaml);
    object(&redis, "Deployment", "protogate-redis");
    object(&redis, "Service", "protogate-redis");
    let shared = object(&redis, "ConfigMap", "protogate-config")["data"]["gateway.toml"].as_str().unwrap();
    let config = protogate::config::Config::from_toml(shared).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(config.rate_limit.redis_url.as_deref(), Some("redis://protogate-redis:6379"));
    assert_eq!(config.cache.backend, "redis");
}
