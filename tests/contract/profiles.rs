//! Backends-for-frontends (`[[profile]]`): the same routes under `/mobile` and `/web`, each
//! with its own allowed, denied and renamed fields and JSON options; routes a profile does not
//! list are 404 under its prefix; a profile's policies and the routes' own both apply.

use protogate::config::Config;
use serde_json::{Value, json};
use tonic::Code;

use crate::support::{Reply, Upstream, examples_config, hs256_bearer, hs256_jwt, start_examples};

const GET_USER: &str = "/example.users.v1.UserService/GetUser";

const PROFILES: &str = r#"
[[aggregate]]
route = "GET /bff/users/{id}/dashboard"
calls.user   = { method = "example.users.v1.UserService/GetUser",     request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{path.id}" } }

[[profile]]
name = "mobile"
prefix = "/mobile"
json = { use_proto_names = true, enums_as_ints = true }
routes = [
  { route = "GET /v1/users/{id}", allow = ["id", "display_name", "role", "address.city"], rename = { display_name = "name" } },
  { route = "GET /bff/users/{id}/dashboard", deny = ["orders.orders.items", "user.email"], rename = { "user.display_name" = "name" } },
]

[[profile]]
name = "web"
prefix = "/web/"
routes = [ { route = "GET /v1/users/{id}", deny = ["email", "address.street"] } ]
"#;

fn user(id: &str) -> Value {
    json!({"id": id, "email": "ada@example.com", "displayName": "Ada", "role": "ROLE_ADMIN",
           "address": {"street": "1 Loom Lane", "city": "London"}})
}

fn answer(upstream: &Upstream) {
    upstream.script(|call| match call.path.as_str() {
        GET_USER => Reply::json(user(call.request["id"].as_str().unwrap_or_default())),
        _ => Reply::json(json!({"orders": [{"id": "o-1", "userId": "7", "totalMicros": "5",
                                            "items": [{"sku": "BOOK", "quantity": 1}]}]})),
    });
}

#[tokio::test]
async fn each_profile_shapes_the_same_route_its_own_way() {
    let (upstream, gateway) = start_examples(PROFILES).await;
    answer(&upstream);
    let get = |path: &'static str| gateway.client.request("GET", path).send();

    let mobile = get("/mobile/v1/users/7").await;
    assert_eq!(mobile.status, 200, "{}", mobile.text());
    assert_eq!(mobile.json(), json!({"id": "7", "name": "Ada", "role": 2, "address": {"city": "London"}}));
    assert_eq!(mobile.text(), r#"{"id":"7","name":"Ada","role":2,"address":{"city":"London"}}"#);

    let web = get("/web/v1/users/7").await;
    assert_eq!(
        web.json(),
        json!({"id": "7", "displayName": "Ada", "role": "ROLE_ADMIN", "address": {"city": "London"}})
    );
    // Outside the profiles, the route answers as ever.
    assert_eq!(get("/v1/users/7").await.json(), user("7"));
    // The client's own `fields=` still applies (in the route's field names).
    assert_eq!(get("/web/v1/users/7?fields=id,email").await.json(), json!({"id": "7"}));

    let dashboard = get("/mobile/bff/users/7/dashboard").await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.text());
    assert_eq!(
        dashboard.json(),
        json!({"user": {"id": "7", "name": "Ada", "role": 2, "address": {"street": "1 Loom Lane", "city": "London"}},
               "orders": {"orders": [{"id": "o-1", "user_id": "7", "total_micros": "5"}]}})
    );

    // What a profile does not list is not there, under its prefix.
    let hidden = get("/mobile/v1/users/7/orders").await;
    let error = hidden.assert_error(404, Code::NotFound as i32);
    assert_eq!(error["message"], "no route matches GET /mobile/v1/users/7/orders");
    get("/web/bff/users/7/dashboard").await.assert_error(404, Code::NotFound as i32);
    get("/mobilex/v1/users/7").await.assert_error(404, Code::NotFound as i32);
    let admin = gateway.admin().await;
    let table = admin.request("GET", "/routes").send().await.json();
    let table = table.as_array().unwrap();
    assert_eq!(table[0]["path"], "/bff/users/{id}/dashboard", "composite routes first: they match first");
    assert_eq!(table[0]["aggregate"][1]["grpc_method"], "example.orders.v1.OrderService/ListOrders");
    let exposed: Vec<(&str, &str)> =
        table.iter().filter_map(|r| Some((r["profile"].as_str()?, r["path"].as_str()?))).collect();
    assert_eq!(
        exposed,
        [
            ("mobile", "/mobile/bff/users/{id}/dashboard"),
            ("mobile", "/mobile/v1/users/{id}"),
            ("web", "/web/v1/users/{id}")
        ]
    );
    let log = gateway.access_log(8).await;
    let routes: Vec<&str> = log.iter().filter_map(|l| l["route"].as_str()).collect();
    assert!(routes.contains(&"/mobile/v1/users/{id}"), "{routes:?}");
    assert!(routes.contains(&"/mobile/bff/users/{id}/dashboard"), "{routes:?}");
}

#[tokio::test]
async fn a_profiles_policies_and_the_routes_own_both_apply() {
    let config = format!(
        r#"{PROFILES}
[[policy]]
name = "mobile"
match = {{ path_prefix = "/mobile" }}
rate_limits = [{{ key = "ip", per_minute = 1 }}]

[[policy]]
name = "users"
match = {{ path_prefix = "/v1/users" }}
rate_limits = [{{ key = "route", per_minute = 1 }}]
"#
    );
    let (upstream, gateway) = start_examples(&config).await;
    answer(&upstream);
    let get = |path: &'static str| gateway.client.request("GET", path).send();
    assert_eq!(get("/mobile/bff/users/1/dashboard").await.status, 200);
    get("/mobile/bff/users/1/dashboard").await.assert_error(429, Code::ResourceExhausted as i32);
    // The route's own policy counts requests that come through a profile too.
    assert_eq!(get("/web/v1/users/1").await.status, 200);
    get("/v1/users/1").await.assert_error(429, Code::ResourceExhausted as i32);
}

#[tokio::test]
async fn check_names_what_a_profile_gets_wrong() {
    let cases = [
        (
            r#"routes = [{ route = "GET /v1/users/{id}/profile" }]"#,
            "config: profile[0].routes[0].route: no route is GET /v1/users/{id}/profile",
        ),
        (
            r#"routes = [{ route = "GET /v1/users/{user_id}/orders:watch" }]"#,
            "config: profile[0].routes[0].route: example.orders.v1.OrderService.WatchOrders streams: profiles expose unary and composite routes",
        ),
        (
            r#"routes = [{ route = "GET /v1/users/{id}", allow = ["colour"] }]"#,
            r#"config: profile[0].routes[0].allow: example.users.v1.User has no field "colour""#,
        ),
        (
            r#"routes = [{ route = "GET /v1/users/{id}", deny = ["address.town"] }]"#,
            r#"config: profile[0].routes[0].deny: "address.town": example.users.v1.Address has no field "town""#,
        ),
        (
            r#"routes = [{ route = "GET /v1/users/{id}", rename = { "email.domain" = "d" } }]"#,
            r#"config: profile[0].routes[0].rename: "email.domain": "email" has no fields inside it"#,
        ),
        (
            r#"routes = []
[[profile]]
name = "again"
prefix = "/m"
routes = []"#,
            r#"config: profile[1].prefix: "/m" is another profile's prefix"#,
        ),
    ];
    for (routes, expected) in cases {
        let extra = format!("[[profile]]\nname = \"m\"\nprefix = \"/m\"\n{routes}\n");
        let config = Config::from_toml(&examples_config("http://127.0.0.1:1", &extra)).unwrap();
        let errors: Vec<String> = match protogate::gateway::Gateway::build(&config) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(errors, [expected], "for {routes}");
    }
    let config = Config::from_toml(&examples_config(
        "http://127.0.0.1:1",
        "[[profile]]\nname = \"m\"\nprefix = \"m/{x}\"\nroutes = []\n",
    ))
    .unwrap();
    let errors = protogate::gateway::Gateway::build(&config).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        r#"config: profile[0].prefix: "m/{x}" is not a literal path prefix such as "/mobile""#
    );
}

#[tokio::test]
async fn a_profile_has_its_own_auth_and_its_own_cache_entries() {
    let secret = "a profile test HMAC secret, 32 bytes";
    let jwt = hs256_jwt(secret);
    let config = format!(
        r#"{PROFILES}
{jwt}
[[policy]]
name = "mobile-app"
match = {{ path_prefix = "/mobile" }}
auth = "required"

[[policy]]
name = "reads"
match = {{ methods = ["GET"] }}
cache = {{ ttl = "60s" }}
"#
    );
    let (upstream, gateway) = start_examples(&config).await;
    answer(&upstream);
    let refused = gateway.client.request("GET", "/mobile/v1/users/7").send().await;
    refused.assert_error(401, Code::Unauthenticated as i32);
    assert!(upstream.calls().is_empty());
    let token = hs256_bearer(secret, "ada");
    let mobile = gateway.client.request("GET", "/mobile/v1/users/7").header("authorization", &token);
    let mobile = mobile.send().await;
    assert_eq!(mobile.status, 200, "{}", mobile.text());

    // The web profile needs no token, and the same route's cached answer is its own shape.
    let web = gateway.client.request("GET", "/web/v1/users/7").send().await;
    assert_eq!((web.status.as_u16(), web.header("x-cache")), (200, Some("MISS")));
    assert_eq!(web.json()["displayName"], "Ada");
    let again = gateway.client.request("GET", "/web/v1/users/7").send().await;
    assert_eq!((again.header("x-cache"), again.json()), (Some("HIT"), web.json()));
    let plain = gateway.client.request("GET", "/v1/users/7").send().await;
    assert_eq!(plain.header("x-cache"), Some("MISS"), "outside the profile: an entry of its own");
    assert_eq!(plain.json(), user("7"));
}

/// The OpenAPI document gives each profile route the answer the profile shapes: the route's
/// schema with its fields kept, dropped and renamed the same way, and a real answer fits it.
#[tokio::test]
async fn the_openapi_document_describes_each_profile_s_shape() {
    let (upstream, gateway) = start_examples(PROFILES).await;
    answer(&upstream);
    let document = gateway.admin().await.request("GET", "/openapi.json").send().await.json();
    let schema_of = |path: &str| {
        document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"].clone()
    };

    let web = schema_of("/web/v1/users/{id}");
    let properties: Vec<&String> = web["properties"].as_object().unwrap().keys().collect();
    assert!(properties.contains(&&"displayName".to_owned()) && !properties.contains(&&"email".to_owned()), "{web}");
    assert!(web["properties"]["address"]["properties"]["street"].is_null(), "address.street is denied: {web}");
    assert!(web["properties"]["address"]["properties"]["city"].is_object());
    let answer = gateway.client.request("GET", "/web/v1/users/7").send().await.json();
    let mut standalone = web.clone();
    standalone["components"] = document["components"].clone();
    assert!(jsonschema::is_valid(&standalone, &answer), "{answer} fits {web}");

    let dashboard = schema_of("/bff/users/{id}/dashboard");
    assert!(dashboard["properties"]["user"].is_object(), "the composite route itself is unshaped");
    // Its own [json] options (proto names, enums as numbers), then its shape.
    let mobile = schema_of("/mobile/v1/users/{id}");
    let mut names: Vec<&String> = mobile["properties"].as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["address", "id", "name", "role"], "{mobile}");
    assert_eq!(mobile["properties"]["role"]["type"], "integer", "enums as numbers: {mobile}");
    assert!(
        document["components"]["schemas"]["mobile.example.users.v1.User"]["properties"]["display_name"].is_object()
    );
    let answer = gateway.client.request("GET", "/mobile/v1/users/7").send().await.json();
    let mut standalone = mobile.clone();
    standalone["components"] = document["components"].clone();
    assert!(jsonschema::is_valid(&standalone, &answer), "{answer} fits {mobile}");
    assert_eq!(document["paths"]["/mobile/v1/users/{id}"]["get"]["x-protogate-profile"], "mobile");
    crate::support::validate_openapi(&document, &[]);
}
