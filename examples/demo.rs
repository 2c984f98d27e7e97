//! The demo: the example user and order services plus the gateway in front of them.
//!
//! Run with
//!
//! ```text
//! cargo run --release --example demo                    # everything
//! cargo run --release --example demo -- --without orders  # orders down: its routes answer 502
//! ```
//!
//! then, in another terminal:
//!
//! ```text
//! curl -s localhost:8080/v1/users/1?view=FULL
//! curl -s -X POST localhost:8080/v1/users -H 'content-type: application/json' \
//!      -d '{"email":"edsger@example.com","displayName":"Edsger Dijkstra"}'
//! curl -s -X PATCH localhost:8080/v1/users/2 -H 'content-type: application/json' -d '{"displayName":"A. M. Turing"}'
//! curl -s -X POST localhost:8080/v1/orders/2:cancel -H 'content-type: application/json' -d '{"reason":"changed my mind"}'
//! curl -s localhost:8080/v1/users/42
//! curl -s localhost:8080/bff/users/1/dashboard   # GetUser + ListOrders in one answer
//! curl -s localhost:9090/metrics      # the admin listener: /healthz /readyz /metrics /routes /config
//! open http://localhost:9090/docs     # every route, with "try it"
//! ```
//!
//! Each request's access log line (human format here; JSON by default) goes to stdout.
//!
//! The gateway loads the services' descriptors from `descriptors/` at start, as a deployment
//! would; the services' code is in `examples/services/`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod services;

use protogate::config::Config;
use protogate::gateway::Gateway;
use protogate::reload::Live;
use tokio::net::TcpListener;

const USERS: &str = "127.0.0.1:50051";
const ORDERS: &str = "127.0.0.1:50052";
const GATEWAY: &str = "127.0.0.1:8080";
const ADMIN: &str = "127.0.0.1:9090";

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let without: Vec<String> = std::env::args().skip_while(|a| a != "--without").skip(1).collect();
    let run_users = !without.iter().any(|s| s == "users");
    let run_orders = !without.iter().any(|s| s == "orders");

    if run_users {
        let listener = bind(USERS).await;
        tokio::spawn(services::serve(listener, Some(services::Users::seeded()), None, std::future::pending()));
        tracing::info!("UserService listening on {USERS}");
    }
    if run_orders {
        let listener = bind(ORDERS).await;
        tokio::spawn(services::serve(listener, None, Some(services::Orders::seeded()), std::future::pending()));
        tracing::info!("OrderService listening on {ORDERS}");
    }

    let descriptors = concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors");
    let config = Config::from_toml(&format!(
        r#"
listen = "{GATEWAY}"
admin_listen = "{ADMIN}"

# One line per request on stdout, for reading in a terminal (JSON is the default).
[access_log]
format = "human"

# A descriptor file copied into descriptors/ is served at once, with no restart.
[descriptors]
paths = ["{descriptors}"]
watch = true

[[upstreams]]
name = "users"
services = ["example.users.v1.*"]
endpoints = ["http://{USERS}"]
timeout = "5s"

[[upstreams]]
name = "orders"
services = ["example.orders.v1.*"]
endpoints = ["http://{ORDERS}"]
timeout = "5s"

# A web app in development on another port may call the gateway from the browser.
[cors]
allow_origins = ["http://localhost:3000"]

# One request, two services: the user and their orders, fetched at the same time.
[[aggregate]]
route = "GET /bff/users/{{id}}/dashboard"
calls.user   = {{ method = "example.users.v1.UserService/GetUser",     request = {{ id = "{{path.id}}" }} }}
calls.orders = {{ method = "example.orders.v1.OrderService/ListOrders", request = {{ user_id = "{{path.id}}" }} }}
"#
    ))
    .expect("the demo config parses");
    let gateway = match Gateway::build(&config) {
        Ok(gateway) => gateway,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            std::process::exit(1);
        }
    };
    tracing::info!("{gateway}");
    let live = Live::new(gateway, config);
    if let Err(e) = protogate::reload::watch(&live, None) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let admin = bind(ADMIN).await;
    let public = protogate::server::router(live.clone());
    tokio::spawn(protogate::admin::serve(admin, live.clone(), public, std::future::pending()));
    tracing::info!("gateway listening on http://{GATEWAY}, admin endpoints on http://{ADMIN}");
    let listener = bind(GATEWAY).await;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    protogate::server::serve(listener, live, shutdown).await.expect("the gateway serves");
}

async fn bind(addr: &str) -> TcpListener {
    match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e} (is another demo running?)");
            std::process::exit(1);
        }
    }
}
