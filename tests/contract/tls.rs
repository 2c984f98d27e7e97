//! TLS termination: HTTP/1.1 and HTTP/2 by ALPN, the certificate reloaded when its files
//! change, client certificates required when a CA is configured. Certificates are made when
//! the tests run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::{Gateway, Upstream, config};

/// A CA, and certificates it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    /// A certificate (PEM) and its key (PEM) for `names`, with `cn` as its common name.
    fn sign(&self, names: &[&str], cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    // Key first, then the certificate: the reload sees a consistent pair once both are in.
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
}

fn client_config(ca: &Ca, client: Option<&(String, String)>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every connection a full handshake: a resumed session would show the old certificate.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

use rustls::pki_types::pem::PemObject;

/// Connects over TLS and sends one GET; the status, the negotiated protocol, and the common
/// name of the certificate the server showed. Errors as text.
async fn get(
    gateway: &Gateway,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(u16, Option<Vec<u8>>, String), String> {
    let tcp = TcpStream::connect(gateway.addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let cert = session.peer_certificates().unwrap()[0].clone();
    let cn = common_name(&cert);
    let io = hyper_util::rt::TokioIo::new(tls);
    let request = http::Request::get(format!("https://localhost{path}")).body(Empty::<Bytes>::new()).unwrap();
    let response = if alpn.as_deref() == Some(b"h2") {
        let (mut sender, connection) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(|e| e.to_string())?
    };
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok((status, alpn, cn))
}

/// The CN of a DER certificate, found by its OID (2.5.4.3) followed by a string.
fn common_name(cert: &CertificateDer<'_>) -> String {
    let der = cert.as_ref();
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(oid.len()).rposition(|w| w == oid).expect("a CN");
    let len = der[at + oid.len() + 1] as usize;
    let start = at + oid.len() + 2;
    String::from_utf8_lossy(&der[start..start + len]).into_owned()
}

async fn tls_gateway(dir: &Path, extra: &str) -> (Gateway, Upstream) {
    let upstream = Upstream::start().await;
    let upstreams =
        format!("[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\n", upstream.url());
    let tls = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nreload_interval = \"50ms\"\n{extra}",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    (Gateway::with_config(config(&tls, &upstreams)).await, upstream)
}

#[tokio::test]
async fn https_over_http1_and_http2_by_alpn_and_the_upstream_hears_it_was_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    write_pair(dir.path(), &ca.sign(&["localhost"], "first"));
    let (gateway, upstream) = tls_gateway(dir.path(), "").await;
    let (status, alpn, _) = get(&gateway, client_config(&ca, None, &[b"http/1.1"]), "/v1/shelves/1").await.unwrap();
    assert_eq!((status, alpn.as_deref()), (200, Some(&b"http/1.1"[..])));
    assert_eq!(upstream.last_call().metadata["x-forwarded-proto"], "https");
    let (status, alpn, _) =
        get(&gateway, client_config(&ca, None, &[b"h2", b"http/1.1"]), "/v1/shelves/1").await.unwrap();
    assert_eq!((status, alpn.as_deref()), (200, Some(&b"h2"[..])));
    // Cleartext on the TLS port goes nowhere.
    assert!(!gateway.client.raw(b"GET /v1/shelves/1 HTTP/1.1\r\nhost: x\r\n\r\n").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    write_pair(dir.path(), &ca.sign(&["localhost"], "before renewal"));
    let (gateway, _upstream) = tls_gateway(dir.path(), "").await;
    let client = client_config(&ca, None, &[b"http/1.1"]);
    assert_eq!(get(&gateway, client.clone(), "/v1/shelves/1").await.unwrap().2, "before renewal");
    // A broken renewal (the key does not match): the old certificate keeps serving.
    let (_, other_key) = ca.sign(&["localhost"], "unused");
    let (new_cert, _) = ca.sign(&["localhost"], "broken");
    write_pair(dir.path(), &(new_cert, other_key));
    // A good renewal after it: served within the reload interval, bounded wait.
    let renewed = ca.sign(&["localhost"], "after renewal");
    let broken_seen = get(&gateway, client.clone(), "/v1/shelves/1").await.unwrap().2;
    assert_eq!(broken_seen, "before renewal", "a pair that does not match is never served");
    write_pair(dir.path(), &renewed);
    for _ in 0..100 {
        if get(&gateway, client.clone(), "/v1/shelves/1").await.unwrap().2 == "after renewal" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the renewed certificate was not served within 5 s");
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    write_pair(dir.path(), &ca.sign(&["localhost"], "server"));
    let clients = Ca::new("client CA");
    std::fs::write(dir.path().join("clients.pem"), &clients.pem).unwrap();
    let extra = format!("client_ca_file = \"{}\"", dir.path().join("clients.pem").display());
    let (gateway, upstream) = tls_gateway(dir.path(), &extra).await;

    let good = clients.sign(&["client.test"], "a client");
    let (status, _, _) = get(&gateway, client_config(&ca, Some(&good), &[b"http/1.1"]), "/v1/shelves/1").await.unwrap();
    assert_eq!(status, 200);

    let no_cert = get(&gateway, client_config(&ca, None, &[b"http/1.1"]), "/v1/shelves/1").await;
    assert!(no_cert.is_err(), "no client certificate: {no_cert:?}");
    let stranger = Ca::new("another CA").sign(&["client.test"], "stranger");
    let wrong = get(&gateway, client_config(&ca, Some(&stranger), &[b"http/1.1"]), "/v1/shelves/1").await;
    assert!(wrong.is_err(), "a certificate from another CA: {wrong:?}");
    assert_eq!(upstream.calls().len(), 1, "refused connections never reached the upstream");
}

/// A TLS server configuration for an upstream, requiring client certificates from
/// `clients` when given.
fn upstream_tls(ca: &Ca, clients: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let (cert, key) = ca.sign(&["upstream.test"], "upstream");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match clients {
        Some(clients) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(clients.pem.as_bytes()).unwrap()).unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

async fn gateway_to(upstream: &Upstream, tls: &str) -> Gateway {
    let upstreams = format!(
        "[[upstreams]]\nname = \"secure\"\nservices = [\"*\"]\nendpoints = [\"https://127.0.0.1:{}\"]\n{tls}\n",
        upstream.addr.port()
    );
    Gateway::with_config(config("", &upstreams)).await
}

#[tokio::test]
async fn upstreams_over_tls_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let clients = Ca::new("gateway CA");
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    let gateway_cert = clients.sign(&["gateway.test"], "the gateway");
    std::fs::write(dir.path().join("gw.pem"), &gateway_cert.0).unwrap();
    std::fs::write(dir.path().join("gw.key"), &gateway_cert.1).unwrap();
    let ca_file = dir.path().join("ca.pem").display().to_string();

    // Verified against the private CA, under the certificate's name.
    let upstream = Upstream::start_tls(upstream_tls(&ca, None)).await;
    let trusting = format!("tls = {{ ca_file = \"{ca_file}\", server_name = \"upstream.test\" }}");
    let gateway = gateway_to(&upstream, &trusting).await;
    assert_eq!(gateway.client.request("GET", "/v1/shelves/1").send().await.status, 200);
    assert_eq!(upstream.calls().len(), 1);

    // Without the CA (the Mozilla roots) the upstream's certificate is not trusted: 502.
    let gateway = gateway_to(&upstream, "tls = { server_name = \"upstream.test\" }").await;
    let json = gateway.client.request("GET", "/v1/shelves/1").send().await.assert_error(502, 14);
    assert_eq!(json["message"], "upstream secure is unreachable", "the why is the operator's: {json}");
    let logged = &gateway.access_log(1).await[0]["error"];
    assert!(logged.as_str().unwrap().contains("certificate"), "{logged}");

    // An upstream that wants a client certificate gets the configured one.
    let strict = Upstream::start_tls(upstream_tls(&ca, Some(&clients))).await;
    let with_cert = format!(
        "tls = {{ ca_file = \"{ca_file}\", server_name = \"upstream.test\", cert_file = \"{}\", key_file = \"{}\" }}",
        dir.path().join("gw.pem").display(),
        dir.path().join("gw.key").display()
    );
    let gateway = gateway_to(&strict, &with_cert).await;
    assert_eq!(gateway.client.request("GET", "/v1/shelves/1").send().await.status, 200);
    let gateway = gateway_to(&strict, &trusting).await;
    gateway.client.request("GET", "/v1/shelves/1").send().await.assert_error(502, 14);
    assert_eq!(strict.calls().len(), 1, "only the call with the certificate got through");
}
