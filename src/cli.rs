//! The command line: `serve`, `routes` and `check`, their flags, their output and exit codes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use protogate::config::{Config, Overrides, UpstreamFlag};
use protogate::gateway::Gateway;
use protogate::reload::{Live, Trigger};

/// An HTTP/JSON to gRPC gateway driven by protobuf descriptors.
#[derive(Debug, Parser)]
#[command(name = "protogate", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP/JSON on the listener, calling the upstream gRPC services.
    Serve(SourceArgs),
    /// Print the route table, or explain how one request would be routed.
    Routes(RoutesArgs),
    /// Validate the configuration and descriptors; exit 1 listing every problem.
    Check(SourceArgs),
    /// Print the OpenAPI 3.1 document of the routes served (JSON unless --yaml).
    Openapi(OpenapiArgs),
}

#[derive(Debug, Args)]
struct OpenapiArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// JSON (the default).
    #[arg(long, conflicts_with = "yaml")]
    json: bool,
    /// YAML instead of JSON.
    #[arg(long)]
    yaml: bool,
}

/// Where the configuration comes from; flags win over the file.
#[derive(Debug, Clone, Args)]
struct SourceArgs {
    /// The config file [default: ./gateway.toml if present].
    #[arg(long, env = "PROTOGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public listener address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin listener address.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// A descriptor set (.binpb .pb .desc .protoset), a .proto file, or a directory of them.
    #[arg(long = "descriptors", value_name = "PATH")]
    descriptors: Vec<PathBuf>,
    /// The default upstream, or `pkg.Service=URL` / `pkg.*=URL` for some services.
    #[arg(long = "upstream", value_name = "[SELECTOR=]URL")]
    upstreams: Vec<UpstreamFlag>,
}

#[derive(Debug, Args)]
struct RoutesArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Explain one request, e.g. 'GET /v1/users/7?view=FULL', without sending it.
    #[arg(long = "match", value_name = "REQUEST")]
    request: Option<String>,
    /// The JSON body of the request given to --match.
    #[arg(long, value_name = "JSON", requires = "request")]
    body: Option<String>,
}

impl Cli {
    /// The diagnostic log's format, from the config file the subcommand will read: the log
    /// starts before the config is loaded, so this is a light first read (a file that does not
    /// parse gives the default, and its errors come when it is loaded for real).
    pub(crate) fn log_format(&self) -> protogate::config::LogFormat {
        let source = match &self.command {
            Command::Serve(source) | Command::Check(source) => source,
            Command::Routes(args) => &args.source,
            Command::Openapi(args) => &args.source,
        };
        config_path(source)
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| Config::from_toml(&text).ok())
            .map(|config| config.log.format)
            .unwrap_or_default()
    }

    /// Runs the subcommand.
    pub(crate) async fn run(self) -> ExitCode {
        match self.command {
            Command::Serve(source) => serve(source).await,
            Command::Routes(args) => routes(args).await,
            Command::Check(source) => check(source).await,
            Command::Openapi(args) => openapi(args).await,
        }
    }
}

// === config ===

/// The config file: `--config`, else `./gateway.toml` if present.
fn config_path(args: &SourceArgs) -> Option<PathBuf> {
    let default = Path::new("gateway.toml");
    args.config.clone().or_else(|| default.exists().then(|| default.to_owned()))
}

fn load_config(args: SourceArgs) -> Result<Config, String> {
    let path = config_path(&args);
    let mut config = match &path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut config = Config::from_toml(&text).map_err(|e| match e.key.is_empty() {
                true => format!("{}: {}", path.display(), e.message),
                false => format!("{}: {e}", path.display()),
            })?;
            config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
            config.read_secret_files().map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!("{}: {}", path.display(), lines.join("; "))
            })?;
            config
        }
        None => Config::default(),
    };
    config.apply_otel_env(&|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    config.merge(Overrides {
        listen: args.listen,
        admin_listen: args.admin_listen,
        descriptors: args.descriptors,
        upstreams: args.upstreams,
    });
    Ok(config)
}

/// Loads the config (and the descriptors reflection gives) and builds the gateway, printing
/// every problem on failure.
async fn build(source: SourceArgs) -> Result<(Config, Gateway), ExitCode> {
    let mut config = load_config(source).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let reflecting: Vec<_> = config.reflection_upstreams().cloned().collect();
    if !reflecting.is_empty() {
        config.reflected = protogate::descriptors::reflection::fetch_all(&reflecting, &[]).await;
    }
    match Gateway::build(&config) {
        Ok(gateway) => Ok((config, gateway)),
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            Err(ExitCode::FAILURE)
        }
    }
}

// === serve ===

async fn serve(source: SourceArgs) -> ExitCode {
    let (config, gateway) = match build(source.clone()).await {
        Ok(built) => built,
        Err(code) => return code,
    };
    log_startup(&gateway);
    let config_file = config_path(&source);
    let (listen, admin_listen, tls, watch) =
        (config.listen, config.admin_listen, config.tls.is_some(), config.descriptors.watch);
    let shutdown_delay = config.shutdown_delay;
    let reread = source.clone();
    let live = Live::with_source(gateway, config, Box::new(move || load_config(reread.clone())));
    if watch {
        if let Err(e) = protogate::reload::watch(&live, config_file.as_deref()) {
            eprintln!("error: descriptors.watch: {e}");
            return ExitCode::FAILURE;
        }
        tracing::info!("watching the descriptor paths and the config file for changes");
    }
    tokio::spawn(reload_on_hangup(live.clone()));
    protogate::reload::follow_reflection(&live);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map_or_else(|_| listen.to_string(), |a| a.to_string());
    let scheme = if tls { "https" } else { "http" };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let admin = match admin_listen {
        Some(admin_addr) => match start_admin(admin_addr, live.clone(), stopped).await {
            Ok(admin) => Some(admin),
            Err(code) => return code,
        },
        None => None,
    };
    tracing::info!("listening on {scheme}://{addr}");
    let draining = live.clone();
    let shutdown = async move {
        shutdown_signal().await;
        // Readiness fails at once; connections are still taken until the load balancers
        // have seen it (a second signal cuts the wait short).
        draining.gateway().start_draining();
        if !shutdown_delay.is_zero() {
            tracing::info!("shutting down: readiness fails now, new connections are refused in {shutdown_delay:?}");
            tokio::select! {
                () = tokio::time::sleep(shutdown_delay) => {}
                () = shutdown_signal() => {}
            }
        }
    };
    let served = protogate::server::serve(listener, live.clone(), shutdown).await;
    let _ = stop.send(true);
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    live.gateway().observer().shutdown();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds the admin listener and serves it until `stopped` turns true.
async fn start_admin(
    addr: SocketAddr,
    live: Arc<Live>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ExitCode> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        eprintln!("error: cannot listen on {addr} (admin_listen): {e}");
        ExitCode::FAILURE
    })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "the admin listener is on {addr}: anyone who can reach it can read /metrics, /routes and /config"
        );
    }
    let local = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
    tracing::info!("admin endpoints on http://{local} (/healthz /readyz /metrics /routes /config /openapi.json /docs)");
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    Ok(tokio::spawn(async move {
        let public = protogate::server::router(live.clone());
        if let Err(e) = protogate::admin::serve(listener, live, public, shutdown).await {
            tracing::error!("admin listener: {e}");
        }
    }))
}

fn log_startup(gateway: &Gateway) {
    for source in gateway.sources() {
        tracing::info!("loaded {source}");
    }
    for upstream in gateway.upstreams().iter() {
        let services = gateway.services_of(&upstream.name);
        tracing::info!(
            "upstream {} at {} serves {}",
            upstream.name,
            upstream.endpoints.join(", "),
            services.join(", ")
        );
    }
    for service in gateway.unserved_services() {
        tracing::warn!("no upstream serves {service}: its routes answer 502");
    }
    for conflict in gateway.table().conflicts() {
        tracing::warn!("{}", describe_conflict(gateway, conflict.winner, conflict.shadowed));
    }
    for warning in gateway.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!("{gateway}");
}

/// SIGHUP reads the config file and the descriptors again (see `protogate::reload`).
async fn reload_on_hangup(live: Arc<Live>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = live.reload(Trigger::Config).await;
        }
    }
    #[cfg(not(unix))]
    let _ = live;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

// === openapi ===

async fn openapi(args: OpenapiArgs) -> ExitCode {
    let (_, gateway) = match build(args.source).await {
        Ok(built) => built,
        Err(code) => return code,
    };
    let document = protogate::openapi::document(&gateway);
    let text = match args.yaml {
        true => serde_norway::to_string(&document).map_err(|e| e.to_string()),
        false => serde_json::to_string_pretty(&document)
            .map(|mut text| {
                text.push('\n');
                text
            })
            .map_err(|e| e.to_string()),
    };
    match text {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// === routes ===

async fn routes(args: RoutesArgs) -> ExitCode {
    let (_, gateway) = match build(args.source).await {
        Ok(built) => built,
        Err(code) => return code,
    };
    if let Some(request) = &args.request {
        let explanation = protogate::explain::explain(&gateway, request, args.body.as_deref());
        print!("{}", explanation.text);
        return if explanation.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let aggregates = gateway.aggregates().routes().iter().map(|aggregate| {
        let calls: Vec<&str> = aggregate.calls.iter().map(|c| c.grpc_method.as_str()).collect();
        let upstreams: Vec<&str> =
            aggregate.calls.iter().map(|c| gateway.upstream_of(c.route).map_or("-", |u| u.name.as_str())).collect();
        [
            aggregate.http_method.to_string(),
            aggregate.template.to_string(),
            calls.join(" + "),
            "-".to_owned(),
            upstreams.join(" + "),
        ]
    });
    let profiles = gateway.profiles().iter().flat_map(|profile| {
        let exposed = profile.exposed(gateway.table().routes(), gateway.aggregates());
        exposed.into_iter().map(move |route| {
            let (method, path) = route.split_once(' ').unwrap_or(("", route.as_str()));
            [method.to_owned(), path.to_owned(), format!("(profile {})", profile.name), "-".to_owned(), "-".to_owned()]
        })
    });
    let rows: Vec<[String; 5]> = aggregates
        .chain(gateway.table().routes().iter().enumerate().map(|(i, route)| {
            [
                route.http_method.to_string(),
                route.template.to_string(),
                route.method.full_name().to_owned(),
                route.body.to_string(),
                gateway.upstream_of(i).map_or("-", |u| u.name.as_str()).to_owned(),
            ]
        }))
        .chain(profiles)
        .collect();
    if args.json {
        let routes = protogate::admin::route_table(&gateway);
        println!("{}", serde_json::to_string_pretty(&routes).unwrap_or_default());
    } else {
        print_table(&["METHOD", "PATH", "GRPC METHOD", "BODY", "UPSTREAM"], &rows);
    }
    ExitCode::SUCCESS
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let print_row = |cells: Vec<&str>| {
        let line: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", line.join("  ").trim_end());
    };
    print_row(header.to_vec());
    for row in rows {
        print_row(row.iter().map(String::as_str).collect());
    }
}

// === check ===

async fn check(source: SourceArgs) -> ExitCode {
    let (config, gateway) = match build(source).await {
        Ok(built) => built,
        Err(code) => return code,
    };
    let conflicts = gateway.table().conflicts();
    for conflict in conflicts {
        eprintln!("error: {}", describe_conflict(&gateway, conflict.winner, conflict.shadowed));
    }
    for service in gateway.unserved_services() {
        eprintln!("warning: no upstream serves {service}: its routes would answer 502");
    }
    for warning in gateway.warnings() {
        eprintln!("warning: {warning}");
    }
    if !conflicts.is_empty() {
        return ExitCode::FAILURE;
    }
    let files: usize = gateway.sources().iter().map(|s| s.files.len()).sum();
    println!("ok: {gateway} from {} and {}", plural(files, "proto file"), plural(config.upstreams.len(), "upstream"));
    ExitCode::SUCCESS
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

fn describe_conflict(gateway: &Gateway, winner: usize, shadowed: usize) -> String {
    let routes = gateway.table().routes();
    let (w, s) = (&routes[winner], &routes[shadowed]);
    format!(
        "{} {} of {} never matches: {} {} of {} has the same shape and comes first",
        s.http_method,
        s.template,
        s.method.full_name(),
        w.http_method,
        w.template,
        w.method.full_name()
    )
}
