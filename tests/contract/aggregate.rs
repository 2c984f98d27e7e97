//! Composite routes (`[[aggregate]]`) over the example services' descriptors, with a scripted
//! upstream serving both services: calls that overlap, calls that wait for others, both failure
//! policies, per-call deadlines, every input source, merged fields, policies, and `check`'s
//! messages.

use std::time::Duration;

use protogate::config::Config;
use serde_json::{Value, json};
use tonic::Code;

use crate::support::{Gateway, Reply, Upstream, examples_config, hs256_bearer, hs256_jwt, start_examples};

const GET_USER: &str = "/example.users.v1.UserService/GetUser";
const LIST_USERS: &str = "/example.users.v1.UserService/ListUsers";
const LIST_ORDERS: &str = "/example.orders.v1.OrderService/ListOrders";
const CREATE_ORDER: &str = "/example.orders.v1.OrderService/CreateOrder";
const SECRET: &str = "a composite route HMAC secret, 32+";

/// The demo's dashboard: both calls read only the path, so they run together.
const DASHBOARD: &str = r#"
[[aggregate]]
route = "GET /bff/users/{id}/dashboard"
calls.user   = { method = "example.users.v1.UserService/GetUser",     request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{path.id}" } }
"#;

fn user(id: &str) -> Value {
    json!({"id": id, "email": format!("{id}@example.com"), "displayName": format!("User {id}")})
}

fn orders(user_id: &str) -> Value {
    json!({"orders": [{"id": "o-1", "userId": user_id, "totalMicros": "2500000", "currency": "EUR"}]})
}

/// Answers GetUser and ListOrders from the request, after `delay`.
fn answer_both(upstream: &Upstream, delay: Duration) {
    upstream.script(move |call| match call.path.as_str() {
        GET_USER => Reply::json(user(call.request["id"].as_str().unwrap_or_default())).delay(delay),
        LIST_ORDERS => Reply::json(orders(call.request["userId"].as_str().unwrap_or_default())).delay(delay),
        _ => Reply::status(Code::Unimplemented, "not scripted"),
    });
}

fn calls_to(upstream: &Upstream, path: &str) -> Vec<crate::support::Call> {
    upstream.calls().into_iter().filter(|c| c.path == path).collect()
}

#[tokio::test]
async fn the_dashboard_calls_overlap_and_their_results_sit_under_their_names() {
    let (upstream, gateway) = start_examples(DASHBOARD).await;
    answer_both(&upstream, Duration::from_millis(300));
    let response = gateway.client.request("GET", "/bff/users/42/dashboard").send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({"user": user("42"), "orders": orders("42")}));
    assert!(response.text().starts_with(r#"{"user":"#), "the config's order: {}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    // Both were being answered at the same moment: neither waited for the other.
    assert_eq!(upstream.peak_unary_calls(), 2);
    assert_eq!(calls_to(&upstream, GET_USER)[0].request, json!({"id": "42"}));
    assert_eq!(calls_to(&upstream, LIST_ORDERS)[0].request, json!({"userId": "42"}));
    let log = gateway.access_log(1).await;
    assert_eq!(log[0]["route"], "/bff/users/{id}/dashboard");
    assert_eq!(log[0]["grpc_method"], "example.users.v1.UserService/GetUser,example.orders.v1.OrderService/ListOrders");
}

#[tokio::test]
async fn a_call_that_reads_another_call_waits_for_its_answer() {
    let config = r#"
[[aggregate]]
route = "GET /bff/users/{id}/dashboard"
calls.user   = { method = "example.users.v1.UserService/GetUser",     request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{user.id}", page_size = "{query.limit}" } }
"#;
    let (upstream, gateway) = start_examples(config).await;
    // The user service knows the user by another id than the path's.
    upstream.script(|call| match call.path.as_str() {
        GET_USER => Reply::json(user("u-7")).delay(Duration::from_millis(150)),
        _ => Reply::json(orders("u-7")),
    });
    let response = gateway.client.request("GET", "/bff/users/7/dashboard?limit=5").send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["orders"], orders("u-7"));
    let (user_call, orders_call) = (&calls_to(&upstream, GET_USER)[0], &calls_to(&upstream, LIST_ORDERS)[0]);
    assert_eq!(orders_call.request, json!({"userId": "u-7", "pageSize": 5}));
    assert!(orders_call.at.duration_since(user_call.at) >= Duration::from_millis(150), "ListOrders waited for GetUser");
    assert_eq!(upstream.peak_unary_calls(), 1);
    // Without the query parameter the field stays unset.
    let response = gateway.client.request("GET", "/bff/users/7/dashboard").send().await;
    assert_eq!(response.status, 200);
    assert_eq!(calls_to(&upstream, LIST_ORDERS)[1].request, json!({"userId": "u-7"}));
}

#[tokio::test]
async fn on_error_fail_answers_the_first_error_and_cancels_the_calls_in_flight() {
    let (upstream, gateway) = start_examples(DASHBOARD).await;
    upstream.script(|call| match call.path.as_str() {
        GET_USER => Reply::status(Code::NotFound, "no user 42"),
        _ => Reply::json(orders("42")).delay(Duration::from_secs(30)),
    });
    let response = gateway.client.request("GET", "/bff/users/42/dashboard").send().await;
    let body = response.assert_error(404, Code::NotFound as i32);
    assert_eq!(body["message"], "no user 42");
    upstream.wait_until("ListOrders cancelled", |u| u.cancelled_unary_calls() == 1).await;

    // An upstream that cannot be reached is the contract's 502.
    let closed = Upstream::closed_url().await;
    let gateway = Gateway::with_config(Config::from_toml(&examples_config(&closed, DASHBOARD)).unwrap()).await;
    let response = gateway.client.request("GET", "/bff/users/42/dashboard").send().await;
    response.assert_error(502, Code::Unavailable as i32);
}

#[tokio::test]
async fn on_error_partial_answers_200_with_the_results_and_the_failed_calls() {
    let config = r#"
[[aggregate]]
route = "GET /bff/users/{id}/overview"
on_error = "partial"
calls.user   = { method = "example.users.v1.UserService/GetUser",     request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{user.id}" } }
calls.people = { method = "example.users.v1.UserService/ListUsers",   request = { page_size = 2 } }
"#;
    let (upstream, gateway) = start_examples(config).await;
    upstream.script(|call| match call.path.as_str() {
        GET_USER => Reply::status(Code::Unavailable, "users database is down"),
        LIST_USERS => Reply::json(json!({"users": [user("1")], "totalSize": 1})),
        _ => Reply::json(orders("x")),
    });
    let response = gateway.client.request("GET", "/bff/users/9/overview").send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    let mut body = response.json();
    assert_eq!(body["people"], json!({"users": [user("1")], "totalSize": 1}));
    assert!(body.get("user").is_none() && body.get("orders").is_none(), "{body}");
    let errors = body["errors"].as_object_mut().unwrap();
    assert_eq!(errors.keys().collect::<Vec<_>>(), ["user", "orders"]);
    let mut failed = errors["user"].clone();
    assert!(crate::support::take_request_info(&mut failed).is_some(), "{failed}");
    assert_eq!(failed, json!({"code": Code::Unavailable as i32, "message": "users database is down", "details": []}));
    assert_eq!(errors["orders"]["code"], Code::FailedPrecondition as i32);
    assert_eq!(errors["orders"]["message"], "not called: it reads the response of user, which failed");
    assert!(calls_to(&upstream, LIST_ORDERS).is_empty(), "a call whose input failed is not made");
    assert_eq!(calls_to(&upstream, LIST_USERS)[0].request, json!({"pageSize": 2}));
}

#[tokio::test]
async fn each_call_has_its_own_deadline() {
    let calls = r#"
calls.user   = { method = "example.users.v1.UserService/GetUser",     request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{path.id}" }, timeout = "100ms" }
"#;
    let config = format!(
        "[[aggregate]]\nroute = \"GET /fail/{{id}}\"\n{calls}\n[[aggregate]]\nroute = \"GET /partial/{{id}}\"\non_error = \"partial\"\n{calls}"
    );
    let (upstream, gateway) = start_examples(&config).await;
    upstream.script(|call| match call.path.as_str() {
        GET_USER => Reply::json(user("3")).delay(Duration::from_millis(200)),
        _ => Reply::json(orders("3")).delay(Duration::from_secs(30)),
    });
    let response = gateway.client.request("GET", "/fail/3").send().await;
    response.assert_error(504, Code::DeadlineExceeded as i32);

    let response = gateway.client.request("GET", "/partial/3").send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["user"], user("3"), "the slower call without a timeout of its own still answered");
    assert_eq!(body["errors"]["orders"]["code"], Code::DeadlineExceeded as i32);
    // The deadline went upstream as grpc-timeout.
    let sent = calls_to(&upstream, LIST_ORDERS)[0].metadata.get("grpc-timeout").unwrap().to_str().unwrap().to_owned();
    let (digits, unit) = sent.split_at(sent.len() - 1);
    let scale = match unit {
        "n" => 1,
        "u" => 1_000,
        "m" => 1_000_000,
        _ => panic!("{sent}"),
    };
    assert!(digits.parse::<u64>().unwrap() * scale <= 100_000_000, "{sent}");
}

#[tokio::test]
async fn requests_are_built_from_body_query_claims_and_text_and_fields_merge_at_the_top() {
    let config = format!(
        r#"
{}
[[policy]]
name = "bff"
match = {{ path_prefix = "/bff" }}
auth = "required"

[[aggregate]]
route = "POST /bff/checkout"
calls.buyer = {{ method = "example.users.v1.UserService/GetUser", request = {{ id = "users/{{claim.sub}}" }}, merge = ["display_name", "email"] }}
calls.order = {{ method = "example.orders.v1.OrderService/CreateOrder", request = {{ user_id = "{{buyer.id}}", order = {{ currency = "{{query.currency}}", items = "{{body.items}}", cancel_reason = "{{{{none}}}}" }} }} }}
calls.audit = {{ method = "example.users.v1.UserService/ListUsers", request = {{ page_token = "{{body.note}}" }}, merge = [] }}
"#,
        hs256_jwt(SECRET)
    );
    let (upstream, gateway) = start_examples(&config).await;
    upstream.script(|call| match call.path.as_str() {
        GET_USER => Reply::json(json!({"id": "u-1", "email": "ada@example.com", "displayName": "Ada", "tags": ["x"]})),
        CREATE_ORDER => Reply::json(json!({"id": "o-9", "userId": "u-1", "currency": "EUR"})),
        _ => Reply::json(json!({})),
    });
    let token = hs256_bearer(SECRET, "ada");
    let body = json!({"items": [{"sku": "book", "quantity": 2}], "note": "gift"});
    let response = gateway
        .client
        .request("POST", "/bff/checkout?currency=EUR")
        .header("authorization", &token)
        .json(&body)
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"displayName": "Ada", "email": "ada@example.com", "order": {"id": "o-9", "userId": "u-1", "currency": "EUR"}})
    );
    assert_eq!(calls_to(&upstream, GET_USER)[0].request, json!({"id": "users/ada"}));
    assert_eq!(
        calls_to(&upstream, CREATE_ORDER)[0].request,
        json!({"userId": "u-1", "order": {"currency": "EUR", "items": [{"sku": "book", "quantity": 2}], "cancelReason": "{none}"}})
    );
    assert_eq!(calls_to(&upstream, LIST_USERS)[0].request, json!({"pageToken": "gift"}));

    // The policy applies: no token, no calls.
    let response = gateway.client.request("POST", "/bff/checkout").json(&body).send().await;
    response.assert_error(401, Code::Unauthenticated as i32);
    // A body of the wrong type fails as the JSON mapping says, naming the field.
    let response = gateway
        .client
        .request("POST", "/bff/checkout")
        .header("authorization", &token)
        .json(&json!({"items": "many"}))
        .send()
        .await;
    let error = response.assert_error(400, Code::InvalidArgument as i32);
    assert!(error["message"].as_str().unwrap().contains("items"), "{error}");
    let response = gateway
        .client
        .request("POST", "/bff/checkout")
        .header("authorization", &token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await;
    response.assert_error(400, Code::InvalidArgument as i32);
}

#[tokio::test]
async fn a_policy_that_fits_any_call_applies_to_the_composite_route() {
    let config = format!(
        "{DASHBOARD}\n[[policy]]\nname = \"orders\"\nmatch = {{ grpc = [\"example.orders.v1.*\"] }}\nrate_limits = [{{ key = \"ip\", per_minute = 1 }}]\n"
    );
    let (upstream, gateway) = start_examples(&config).await;
    answer_both(&upstream, Duration::ZERO);
    assert_eq!(gateway.client.request("GET", "/bff/users/1/dashboard").send().await.status, 200);
    let refused = gateway.client.request("GET", "/bff/users/1/dashboard").send().await;
    refused.assert_error(429, Code::ResourceExhausted as i32);
    assert_eq!(upstream.calls().len(), 2, "the refused request made no call");
    // Other methods on the path: 405 naming the composite route's method.
    let response = gateway.client.request("DELETE", "/bff/users/1/dashboard").send().await;
    response.assert_error(405, Code::Unimplemented as i32);
    assert_eq!(response.header("allow"), Some("GET"));
}

fn build_errors(extra: &str) -> Vec<String> {
    let config = Config::from_toml(&examples_config("http://127.0.0.1:1", extra)).unwrap();
    match protogate::gateway::Gateway::build(&config) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[tokio::test]
async fn check_names_each_mistake_with_its_key() {
    let cases = [
        (
            r#"calls.user = { method = "example.users.v1.UserService/GetUser", request = { idd = "{path.id}" } }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.user.request.idd: example.users.v1.GetUserRequest has no field "idd""#,
        ),
        (
            r#"calls.user = { method = "example.users.v1.UserService/GetUser", request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{user.idd}" } }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.orders.request.user_id: {user.idd}: example.users.v1.User has no field "idd""#,
        ),
        (
            r#"calls.user = { method = "example.users.v1.UserService/GetUser", request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{user.tags}" } }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.orders.request.user_id: {user.tags} is field example.users.v1.User.tags (a list of string): it cannot fill field example.orders.v1.ListOrdersRequest.user_id (string)"#,
        ),
        (
            r#"calls.user = { method = "example.users.v1.UserService/GetUser", request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{user.address.town}" } }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.orders.request.user_id: {user.address.town}: example.users.v1.Address has no field "town""#,
        ),
        (
            r#"calls.user = { method = "example.users.v1.UserService/GetUser", request = { id = "{path.id}", view = 1.5 } }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.user.request: does not decode as example.users.v1.GetUserRequest"#,
        ),
        (
            r#"calls.watch = { method = "example.orders.v1.OrderService/WatchOrders" }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.watch.method: example.orders.v1.OrderService/WatchOrders streams: composite routes call unary methods"#,
        ),
        (
            r#"calls.user = { method = "example.users.v1.UserService/GetUserr" }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.user.method: no method example.users.v1.UserService/GetUserr in the descriptors"#,
        ),
        (
            r#"calls.a = { method = "example.users.v1.UserService/GetUser", request = { id = "{b.id}" } }
calls.b = { method = "example.users.v1.UserService/GetUser", request = { id = "{a.id}" } }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.a: the calls wait for each other in a cycle: a → b → a"#,
        ),
        (
            r#"calls.user = { method = "example.users.v1.UserService/GetUser", merge = ["id"] }
calls.other = { method = "example.users.v1.UserService/GetUser", merge = ["id", "nickname"] }"#,
            r#"config: aggregate["GET /bff/{id}"].calls.other.merge: example.users.v1.User has no field "nickname""#,
        ),
    ];
    for (calls, expected) in cases {
        let errors = build_errors(&format!("[[aggregate]]\nroute = \"GET /bff/{{id}}\"\n{calls}\n"));
        assert!(errors.iter().any(|e| e.starts_with(expected)), "expected {expected:?}, got {errors:#?}");
    }
    let merged_twice = build_errors(
        "[[aggregate]]\nroute = \"GET /bff/{id}\"\ncalls.a = { method = \"example.users.v1.UserService/GetUser\", merge = [\"id\"] }\ncalls.b = { method = \"example.users.v1.UserService/GetUser\", merge = [\"id\"] }\n",
    );
    assert_eq!(
        merged_twice,
        [r#"config: aggregate["GET /bff/{id}"].calls.b.merge: "id" in the answer is already call a's merged field"#]
    );
    let shadowing = build_errors(
        "[[aggregate]]\nroute = \"GET /v1/users/{key}\"\ncalls.a = { method = \"example.users.v1.UserService/GetUser\" }\n",
    );
    assert_eq!(
        shadowing,
        [
            r#"config: aggregate["GET /v1/users/{key}"].route: GET /v1/users/{key} is also a route of example.users.v1.UserService.GetUser: one of them could never be reached"#
        ]
    );
}

#[tokio::test]
async fn fields_trims_a_composite_answer_by_call_then_field() {
    let config = format!(
        "{DASHBOARD}calls.people = {{ method = \"example.users.v1.UserService/ListUsers\", merge = [\"total_size\"] }}\non_error = \"partial\"\n"
    );
    let (upstream, gateway) = start_examples(&config).await;
    upstream.script(|call| match call.path.as_str() {
        GET_USER => Reply::json(user("5")),
        LIST_USERS => Reply::json(json!({"users": [user("1")], "totalSize": 3})),
        _ => Reply::status(Code::Unavailable, "orders are down"),
    });
    let response = gateway.client.request("GET", "/bff/users/5/dashboard?fields=user.email,totalSize").send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["user"], json!({"email": "5@example.com"}));
    assert_eq!(body["totalSize"], 3);
    assert_eq!(body["errors"]["orders"]["code"], Code::Unavailable as i32, "a partial answer's errors always stay");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");

    let calls_before = upstream.calls().len();
    let unknown = gateway.client.request("GET", "/bff/users/5/dashboard?fields=profile").send().await;
    let error = unknown.assert_error(400, Code::InvalidArgument as i32);
    assert_eq!(
        error["message"],
        "query parameter \"fields\": the answer has no key \"profile\" (it has user, orders, totalSize)"
    );
    let deep = gateway.client.request("GET", "/bff/users/5/dashboard?fields=user.colour").send().await;
    let error = deep.assert_error(400, Code::InvalidArgument as i32);
    assert!(error["message"].as_str().unwrap().contains("example.users.v1.User has no field \"colour\""), "{error}");
    assert_eq!(upstream.calls().len(), calls_before, "paths are checked before any call");
}

#[tokio::test]
async fn a_cached_composite_answer_makes_no_calls() {
    let config = format!(
        "{DASHBOARD}\n[[policy]]\nname = \"bff\"\nmatch = {{ path_prefix = \"/bff\" }}\ncache = {{ ttl = \"60s\" }}\n"
    );
    let (upstream, gateway) = start_examples(&config).await;
    answer_both(&upstream, Duration::ZERO);
    let first = gateway.client.request("GET", "/bff/users/4/dashboard").send().await;
    assert_eq!((first.status.as_u16(), first.header("x-cache")), (200, Some("MISS")));
    let second = gateway.client.request("GET", "/bff/users/4/dashboard").send().await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.json(), first.json());
    assert_eq!(upstream.calls().len(), 2, "both calls once");
    let other = gateway.client.request("GET", "/bff/users/5/dashboard").send().await;
    assert_eq!(other.header("x-cache"), Some("MISS"), "another path value, another entry");
    assert_eq!(other.json()["user"], user("5"));
}
