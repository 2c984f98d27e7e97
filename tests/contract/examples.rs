//! The example services (tonic-generated servers, as a team would write them) behind the
//! gateway, loaded from the committed `descriptors/`: the flows the README shows.

use protogate::config::Config;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::{Client, Gateway, example_descriptors, validate_openapi};

#[path = "../../examples/services/mod.rs"]
pub(crate) mod services;

struct Demo {
    client: Client,
    gateway: Gateway,
    _services: Vec<oneshot::Sender<()>>,
}

async fn start_service(users: bool, orders: bool) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let users = users.then(services::Users::seeded);
    let orders = orders.then(services::Orders::seeded);
    tokio::spawn(services::serve(listener, users, orders, async {
        let _ = rx.await;
    }));
    (url, tx)
}

/// The demo's layout: one upstream per service, descriptors from `descriptors/`.
async fn demo(orders_running: bool) -> Demo {
    let (users_url, users_stop) = start_service(true, false).await;
    let (orders_url, orders_stop) = if orders_running {
        start_service(false, true).await
    } else {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        (format!("http://{closed}"), oneshot::channel().0)
    };
    let toml = format!(
        r#"
[descriptors]
paths = ["{}/descriptors"]
[[upstreams]]
name = "users"
services = ["example.users.v1.*"]
endpoints = ["{users_url}"]
[[upstreams]]
name = "orders"
services = ["example.orders.v1.*"]
endpoints = ["{orders_url}"]
[[aggregate]]
route = "GET /bff/users/{{id}}/dashboard"
calls.user   = {{ method = "example.users.v1.UserService/GetUser",     request = {{ id = "{{path.id}}" }} }}
calls.orders = {{ method = "example.orders.v1.OrderService/ListOrders", request = {{ user_id = "{{path.id}}" }} }}
"#,
        env!("CARGO_MANIFEST_DIR")
    );
    let gateway = Gateway::with_config(Config::from_toml(&toml).unwrap()).await;
    Demo { client: gateway.client.clone(), gateway, _services: vec![users_stop, orders_stop] }
}

#[tokio::test]
async fn the_committed_descriptors_match_proto() {
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors/examples.binpb")).unwrap();
    let built = std::fs::read(example_descriptors()).unwrap();
    assert!(
        committed == built,
        "descriptors/examples.binpb is out of date with proto/example: copy {} over it",
        example_descriptors().display()
    );
}

#[tokio::test]
async fn crud_through_the_gateway() {
    let demo = demo(true).await;
    let c = &demo.client;

    let ada = c.request("GET", "/v1/users/1?view=FULL").send().await;
    assert_eq!(ada.status, 200);
    assert_eq!(ada.json()["displayName"], "Ada Lovelace");
    assert_eq!(ada.json()["address"]["city"], "London");
    assert_eq!(ada.header("grpc-metadata-x-served-by"), Some("users"));
    let basic = c.request("GET", "/v1/users/1").send().await.json();
    assert!(basic.get("address").is_none(), "BASIC view by default: {basic}");

    let created = c
        .request("POST", "/v1/users")
        .json(&json!({"email": "edsger@example.com", "displayName": "Edsger Dijkstra", "role": "ROLE_MEMBER"}))
        .send()
        .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();

    let patched =
        c.request("PATCH", &format!("/v1/users/{id}")).json(&json!({"displayName": "E. W. Dijkstra"})).send().await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.json()["displayName"], "E. W. Dijkstra");
    assert_eq!(patched.json()["email"], "edsger@example.com", "fields outside the mask are kept");

    let list = c.request("GET", "/v1/users?pageSize=2&role=ROLE_MEMBER").send().await.json();
    assert_eq!(list["users"].as_array().unwrap().len(), 2);
    assert_eq!(list["totalSize"], 3);
    assert!(list["nextPageToken"].is_string());

    let deleted = c.request("DELETE", &format!("/v1/users/{id}")).send().await;
    assert_eq!(deleted.status, 204);
    let gone = c.request("GET", &format!("/v1/users/{id}")).send().await;
    let json = gone.assert_error(404, 5);
    assert_eq!(json["details"][0]["@type"], "type.googleapis.com/google.rpc.ResourceInfo");
    assert_eq!(json["details"][0]["resourceName"], id);
}

#[tokio::test]
async fn errors_with_details_from_a_real_service() {
    let demo = demo(true).await;
    let c = &demo.client;
    let invalid = c.request("POST", "/v1/users").json(&json!({"email": "nope"})).send().await.assert_error(400, 3);
    assert_eq!(invalid["details"][0]["fieldViolations"][0]["field"], "user.email");
    let taken =
        c.request("POST", "/v1/users").json(&json!({"email": "ada@example.com"})).send().await.assert_error(409, 6);
    assert_eq!(taken["details"][0]["reason"], "EMAIL_TAKEN");
    assert_eq!(taken["details"][0]["metadata"]["email"], "ada@example.com");
}

#[tokio::test]
async fn a_custom_verb_and_a_failed_precondition() {
    let demo = demo(true).await;
    let c = &demo.client;
    let cancelled = c.request("POST", "/v1/orders/2:cancel").json(&json!({"reason": "changed my mind"})).send().await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.json()["state"], "CANCELLED");
    assert_eq!(cancelled.json()["totalMicros"], "25000000", "int64 as a string");
    let again = c.request("POST", "/v1/orders/2:cancel").json(&json!({})).send().await.assert_error(400, 9);
    assert_eq!(again["details"][0]["@type"], "type.googleapis.com/google.rpc.PreconditionFailure");
    let orders = c.request("GET", "/v1/users/1/orders?state=SHIPPED").send().await.json();
    assert_eq!(orders["orders"].as_array().unwrap().len(), 1);
    let placed = c
        .request("POST", "/v1/users/2/orders")
        .json(&json!({"items": [{"sku": "X", "quantity": 2, "unitPriceMicros": "1500000"}]}))
        .send()
        .await;
    assert_eq!(placed.status, 201);
    assert_eq!(placed.json()["totalMicros"], "3000000");
    assert_eq!(placed.json()["userId"], "2");
}

#[tokio::test]
async fn a_stopped_service_is_502_and_the_others_keep_working() {
    let demo = demo(false).await;
    let json = demo.client.request("GET", "/v1/users/1/orders").send().await.assert_error(502, 14);
    assert!(json["message"].as_str().unwrap().starts_with("upstream orders is unreachable"), "{json}");
    assert_eq!(demo.client.request("GET", "/v1/users/1").send().await.status, 200);
}

#[tokio::test]
async fn the_dashboard_is_a_user_and_their_orders_from_two_services() {
    let running = demo(true).await;
    let dashboard = running.client.request("GET", "/bff/users/1/dashboard").send().await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.text());
    let json = dashboard.json();
    assert_eq!(json["user"]["displayName"], "Ada Lovelace");
    let orders = json["orders"]["orders"].as_array().unwrap();
    assert!(!orders.is_empty() && orders.iter().all(|o| o["userId"] == "1"), "{json}");
    let missing = running.client.request("GET", "/bff/users/42/dashboard").send().await;
    missing.assert_error(404, 5);

    let without_orders = demo(false).await;
    let json = without_orders.client.request("GET", "/bff/users/1/dashboard").send().await.assert_error(502, 14);
    assert!(json["message"].as_str().unwrap().starts_with("upstream orders is unreachable"), "{json}");
}

#[tokio::test]
async fn a_deadline_shorter_than_the_call_is_504() {
    let demo = demo(true).await;
    let response = demo.client.request("GET", "/v1/users/1").header("grpc-timeout", "1n").send().await;
    response.assert_error(504, 4);
}

#[tokio::test]
async fn watching_orders_sees_the_current_ones_then_each_new_one() {
    let demo = demo(true).await;
    let c = &demo.client;
    let mut watch =
        c.request("GET", "/v1/users/1/orders:watch").header("accept", "text/event-stream").send_streaming().await;
    assert_eq!(watch.status, 200);
    let mut data = Vec::new();
    while data.len() < 2 {
        let line = watch.next_line().await.unwrap();
        if let Some(json) = line.strip_prefix("data: ") {
            data.push(serde_json::from_str::<serde_json::Value>(json).unwrap());
        }
    }
    assert_eq!(data.iter().map(|o| o["id"].as_str().unwrap()).collect::<Vec<_>>(), ["1", "2"]);
    let placed = c
        .request("POST", "/v1/users/1/orders")
        .json(&json!({"items": [{"sku": "PEN", "quantity": 2, "unitPriceMicros": "1500000"}]}))
        .send()
        .await;
    assert_eq!(placed.status, 201);
    loop {
        let line = watch.next_line().await.unwrap();
        if let Some(json) = line.strip_prefix("data: ") {
            let order: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(order["id"], placed.json()["id"]);
            assert_eq!(order["totalMicros"], "3000000");
            break;
        }
    }
}

#[tokio::test]
async fn importing_orders_from_ndjson_and_tracking_them_over_a_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let demo = demo(true).await;
    let c = &demo.client;
    let lines = [
        r#"{"userId": "2", "order": {"items": [{"sku": "A", "quantity": 1, "unitPriceMicros": "1000000"}]}}"#,
        r#"{"userId": "2", "order": {"items": [{"sku": "B", "quantity": 3, "unitPriceMicros": "2000000"}]}}"#,
    ];
    let imported = c
        .request("POST", "/v1/orders:import")
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await;
    assert_eq!(imported.status, 200, "{:?}", imported.body);
    assert_eq!(imported.json(), json!({"imported": 2, "totalMicros": "7000000", "orderIds": ["3", "4"]}));

    let bad = c
        .request("POST", "/v1/orders:import")
        .header("content-type", "application/x-ndjson")
        .body(format!("{}\n{{\"userId\": \"2\", \"order\": {{}}}}\n", lines[0]))
        .send()
        .await;
    let error = bad.assert_error(400, 3);
    assert_eq!(error["message"], "order 2: an order needs at least one item");

    let url = format!("ws://{}/v1/orders:track", demo.gateway.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for id in ["3", "1"] {
        socket.send(Message::text(format!(r#"{{"id": "{id}"}}"#))).await.unwrap();
        let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("a text frame") };
        let order: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(order["id"], id);
    }
    socket.send(Message::text(r#"{"id": "99"}"#)).await.unwrap();
    let Some(Ok(Message::Close(Some(frame)))) = socket.next().await else { panic!("a close frame") };
    let status: serde_json::Value = serde_json::from_str(&frame.reason).unwrap();
    assert_eq!(status["code"], 5);
}

#[tokio::test]
async fn the_example_services_answer_the_grpc_health_protocol_per_service() {
    let (users_url, _users_stop) = start_service(true, false).await;
    let toml = format!(
        r#"
[descriptors]
paths = ["{}/descriptors"]
[[upstreams]]
name = "users"
services = ["example.users.v1.*"]
endpoints = ["{users_url}"]
health_check = {{ interval = "50ms", service = "example.users.v1.UserService" }}
[[upstreams]]
name = "orders"
services = ["example.orders.v1.*"]
endpoints = ["{users_url}"]
health_check = {{ interval = "50ms", service = "example.orders.v1.OrderService" }}
"#,
        env!("CARGO_MANIFEST_DIR")
    );
    let gateway = Gateway::with_config(Config::from_toml(&toml).unwrap()).await;
    let health = |name: &str| {
        let current = gateway.current();
        let upstream = current.upstreams().iter().find(|u| u.name == name).unwrap();
        let endpoints = upstream.endpoint_states();
        (endpoints[0].health(), endpoints[0].health_reason())
    };
    use protogate::upstream::endpoint::Health;
    for _ in 0..500 {
        if health("users").0 == Health::Serving && health("orders").0 == Health::NotServing {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(health("users").0, Health::Serving);
    // This server runs no OrderService: its health service says so.
    let (state, reason) = health("orders");
    assert_eq!(state, Health::NotServing);
    assert!(reason.as_deref().unwrap_or_default().contains("NOT_FOUND"), "{reason:?}");
    assert_eq!(gateway.client.request("GET", "/v1/users/1").send().await.status, 200);
    let orders = gateway.client.request("GET", "/v1/users/1/orders").send().await;
    let error = orders.assert_error(503, 14);
    assert!(error["message"].as_str().unwrap().contains("upstream orders has no healthy endpoint"), "{error}");
}

/// A JSON pointer's escaping of one key.
fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn response_schema(path: &str, method: &str, status: &str, media: &str) -> String {
    format!("/paths/{}/{method}/responses/{status}/content/{}/schema", pointer_key(path), pointer_key(media))
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_real_answers_fit_it() {
    let demo = demo(true).await;
    let admin = demo.gateway.admin().await;
    let response = admin.request("GET", "/openapi.json").send().await;
    assert_eq!(response.status, 200);
    let document = response.json();
    assert_eq!(document["openapi"], "3.1.0");

    let get_user = &document["paths"]["/v1/users/{id}"]["get"];
    assert_eq!(get_user["operationId"], "example.users.v1.UserService.GetUser");
    assert_eq!(
        get_user["description"], "Gets one user. Unknown ids answer NOT_FOUND with a google.rpc.ResourceInfo detail.",
        "the proto comment"
    );
    let parameters = get_user["parameters"].as_array().unwrap();
    assert!(parameters.iter().any(|p| p["name"] == "id" && p["in"] == "path"));
    let view = parameters.iter().find(|p| p["name"] == "view").expect("the query parameter");
    assert_eq!(view["schema"]["enum"], json!(["VIEW_UNSPECIFIED", "BASIC", "FULL"]));
    let user = &document["components"]["schemas"]["example.users.v1.User"];
    assert_eq!(user["properties"]["createTime"]["format"], "date-time", "a Timestamp is its JSON string");
    assert_eq!(user["properties"]["orderCount"]["type"], "string", "an int64 is a string");
    // The PATCH route binds `user.id`: it shares the path item, under the path's name.
    let patch = &document["paths"]["/v1/users/{id}"]["patch"];
    assert_eq!(patch["parameters"][0]["description"], "binds `user.id`");
    assert!(document["paths"]["/example.users.v1.UserService/GetUser"]["post"].is_object(), "the default route");
    let watch = &document["paths"]["/v1/users/{user_id}/orders:watch"]["get"]["responses"]["200"]["content"];
    assert!(watch["application/x-ndjson"].is_object() && watch["text/event-stream"].is_object(), "{watch}");
    let dashboard = &document["paths"]["/bff/users/{id}/dashboard"]["get"];
    assert!(dashboard["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["orders"].is_object());

    // Real answers of the example services, each against the schema that describes it.
    let c = &demo.client;
    let ada = c.request("GET", "/v1/users/1?view=FULL").send().await;
    assert_eq!(ada.status, 200);
    let missing = c.request("GET", "/v1/users/42").send().await;
    assert_eq!(missing.status, 404);
    let orders = c.request("GET", "/v1/users/1/orders").send().await;
    assert_eq!(orders.status, 200);
    let dashboard = c.request("GET", "/bff/users/1/dashboard").send().await;
    assert_eq!(dashboard.status, 200);
    let created = c
        .request("POST", "/v1/users")
        .json(&json!({"email": "barbara@example.com", "displayName": "Barbara Liskov"}))
        .send()
        .await;
    assert_eq!(created.status, 201);
    let json_media = "application/json";
    let cases = [
        (response_schema("/v1/users/{id}", "get", "200", json_media), ada.json()),
        ("/components/responses/Error/content/application~1json/schema".to_owned(), missing.json()),
        (response_schema("/v1/users/{user_id}/orders", "get", "200", json_media), orders.json()),
        (response_schema("/bff/users/{id}/dashboard", "get", "200", json_media), dashboard.json()),
        (response_schema("/v1/users", "post", "200", json_media), created.json()),
    ];
    validate_openapi(&document, &cases);

    // And an answer that is not what the document says fails: the check is real.
    let wrong = [(response_schema("/v1/users/{id}", "get", "200", json_media), json!({"orderCount": 3}))];
    let result = std::panic::catch_unwind(|| validate_openapi(&document, &wrong));
    assert!(result.is_err(), "an int64 given as a number does not fit");
}

#[tokio::test]
async fn the_docs_page_is_on_the_public_listener_only_when_asked() {
    let closed = crate::support::Harness::start().await;
    assert_eq!(closed.get("/docs").await.status, 404, "the public listener serves the API's routes only");
    let admin = closed.gateway.admin().await;
    let page = admin.request("GET", "/docs").send().await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains(r#"<body data-try-base="/docs/try">"#));
    let tried = admin.request("GET", "/docs/try/v1/shelves/1").send().await;
    assert_eq!(tried.status, 200, "the admin listener hands a try to the public router: {}", tried.text());

    let open = crate::support::Harness::start_with("[docs]\npublic = true").await;
    let page = open.get("/docs").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains(r#"<body data-try-base="">"#), "tries go to the page's own origin");
    assert!(page.header("content-security-policy").is_some_and(|csp| csp.contains("connect-src 'self'")));
    let document = open.get("/docs/openapi.json").await.json();
    assert!(document["paths"]["/v1/shelves/{shelf}"]["get"].is_object());
}
