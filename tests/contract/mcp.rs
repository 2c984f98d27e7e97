//! The methods as Model Context Protocol tools, driven by the official MCP Python SDK (`mcp`
//! from PyPI, installed by `scripts/test`) against the example users service: initialize,
//! list, call (a success, NOT_FOUND, and UNAUTHENTICATED without a token), each call through
//! the one pipeline (policies, access log).

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::examples::services;
use crate::support::{Gateway, hs256_bearer, hs256_jwt};

const SECRET: &str = "an MCP test's HMAC secret, 32 bytes+";

/// Runs the SDK client against `url` with `plan`; what it saw.
fn agent(url: &str, plan: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/mcp/client.py");
    let out = std::process::Command::new("python3").arg(script).arg(url).arg(plan.to_string()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the MCP SDK is missing: pip install mcp (scripts/test does)\n{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lists_and_calls_the_methods_through_the_pipeline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users = listener.local_addr().unwrap();
    tokio::spawn(services::serve(listener, Some(services::Users::seeded()), None, std::future::pending()));
    let config = format!(
        "[descriptors]\npaths = [\"{}/descriptors\"]\n\
         [[upstreams]]\nname = \"users\"\nservices = [\"*\"]\nendpoints = [\"http://{users}\"]\n\
         [mcp]\nenabled = true\nmethods = [\"example.users.v1.UserService/*\"]\n\
         {}\n[[policy]]\nname = \"users need a token\"\nmatch = {{ grpc = [\"example.users.v1.UserService\"] }}\nauth = \"required\"\n",
        env!("CARGO_MANIFEST_DIR"),
        hs256_jwt(SECRET)
    );
    let gateway = Gateway::with_config(protogate::config::Config::from_toml(&config).unwrap()).await;
    let url = format!("http://{}/mcp", gateway.addr);
    let token = hs256_bearer(SECRET, "agent-7").trim_start_matches("Bearer ").to_owned();

    let plan =
        json!({"token": token, "calls": [["UserService_GetUser", {"id": "1"}], ["UserService_GetUser", {"id": "42"}]]});
    let seen = tokio::task::spawn_blocking(move || agent(&url, &plan)).await.unwrap();
    assert_eq!(seen["server"], "protogate");
    let tools = seen["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "UserService_ListUsers",
            "UserService_GetUser",
            "UserService_CreateUser",
            "UserService_UpdateUser",
            "UserService_DeleteUser"
        ],
        "the selected service's unary methods only"
    );
    let get_user = &tools[1];
    assert_eq!(
        get_user["description"],
        "Gets one user. Unknown ids answer NOT_FOUND with a google.rpc.ResourceInfo detail."
    );
    assert_eq!(get_user["inputSchema"]["properties"]["view"]["enum"], json!(["VIEW_UNSPECIFIED", "BASIC", "FULL"]));
    assert_eq!(get_user["outputSchema"]["properties"]["createTime"]["format"], "date-time");

    let found = &seen["calls"][0];
    assert_eq!(found["isError"], false, "{found}");
    assert_eq!(found["structuredContent"]["displayName"], "Ada Lovelace");
    let text: Value = serde_json::from_str(found["text"][0].as_str().unwrap()).unwrap();
    assert_eq!(text, found["structuredContent"], "the text is the same JSON");
    let missing = &seen["calls"][1];
    assert_eq!(missing["isError"], true);
    let status: Value = serde_json::from_str(missing["text"][0].as_str().unwrap()).unwrap();
    assert_eq!(status["code"], 5, "NOT_FOUND, as a google.rpc.Status: {status}");
    assert!(
        status["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["@type"] == "type.googleapis.com/google.rpc.ResourceInfo")
    );

    // Without a token the policy refuses the call, as at every other door.
    let url = format!("http://{}/mcp", gateway.addr);
    let plan = json!({"token": null, "calls": [["UserService_GetUser", {"id": "1"}]]});
    let anonymous = tokio::task::spawn_blocking(move || agent(&url, &plan)).await.unwrap();
    let refused = &anonymous["calls"][0];
    assert_eq!(refused["isError"], true);
    let status: Value = serde_json::from_str(refused["text"][0].as_str().unwrap()).unwrap();
    assert_eq!(status["code"], 16, "UNAUTHENTICATED: {status}");

    // Each call is in the access log as the method it called.
    let log = gateway.access_log(3).await;
    let calls: Vec<&Value> =
        log.iter().filter(|line| line["grpc_method"] == "example.users.v1.UserService/GetUser").collect();
    assert_eq!(calls.len(), 3, "{log:?}");
    assert!(calls.iter().any(|line| line["grpc_status"] == "NOT_FOUND"), "{calls:?}");
}

#[tokio::test]
async fn the_mcp_door_is_closed_unless_enabled_and_speaks_json_rpc_errors() {
    let closed = crate::support::Harness::start().await;
    let response = closed.post_json("/mcp", json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    assert_eq!(response.status, 404, "no [mcp]: /mcp is just a path");

    let open = crate::support::Harness::start_with("[mcp]\nenabled = true\npath = \"/agents/mcp\"").await;
    let unknown = open.post_json("/agents/mcp", json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"})).await;
    assert_eq!(unknown.json()["error"]["code"], -32601);
    let notification =
        open.post_json("/agents/mcp", json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    assert_eq!(notification.status, 202);
    let garbage = open.request("POST", "/agents/mcp").header("content-type", "application/json").body("{").send().await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.json()["error"]["code"], -32700);
    assert_eq!(open.get("/agents/mcp").await.status, 405);
    let no_tool = open
        .post_json(
            "/agents/mcp",
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "Nope"}}),
        )
        .await;
    assert_eq!(no_tool.json()["error"]["code"], -32602);
}
