//! The example services behind the demo: an in-memory user directory and order book, written
//! the way a team would write any tonic service (generated stubs, typed messages). protogate
//! knows nothing of this code: it reads their descriptors from `descriptors/`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use prost::Message;
use protogate::pb::google::rpc;
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

pub mod catalog;

/// Generated messages and service stubs.
pub mod pb {
    pub mod users {
        tonic::include_proto!("example.users.v1");
    }
    pub mod orders {
        tonic::include_proto!("example.orders.v1");
    }
}

use pb::orders::order_service_server::{OrderService, OrderServiceServer};
use pb::orders::{
    CancelOrderRequest, CreateOrderRequest, GetOrderRequest, ImportOrdersResponse, ListOrdersRequest,
    ListOrdersResponse, Order, OrderState, WatchOrdersRequest,
};
use pb::users::user_service_server::{UserService, UserServiceServer};
use pb::users::{
    Address, CreateUserRequest, DeleteUserRequest, GetUserRequest, ListUsersRequest, ListUsersResponse, Role,
    UpdateUserRequest, User, View,
};
use tokio_stream::StreamExt;

/// The examples' descriptors, which the reflection service answers from.
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors/examples.binpb"));

/// Serves both services on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    users: Option<Users>,
    orders: Option<Orders>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut routes = tonic::service::RoutesBuilder::default();
    // The standard gRPC health service, which the gateway's `health_check` asks: SERVING for
    // the server as a whole and for each service it runs.
    let (health, health_service) = tonic_health::server::health_reporter();
    routes.add_service(health_service);
    // gRPC server reflection, listing the services this server runs: a gateway with
    // `descriptors = "reflection"` needs no descriptor file for them.
    let mut reflection =
        tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(DESCRIPTORS);
    if let Some(users) = users {
        health.set_serving::<UserServiceServer<Users>>().await;
        routes.add_service(UserServiceServer::new(users));
        reflection = reflection.with_service_name("example.users.v1.UserService");
    }
    if let Some(orders) = orders {
        health.set_serving::<OrderServiceServer<Orders>>().await;
        routes.add_service(OrderServiceServer::new(orders));
        reflection = reflection.with_service_name("example.orders.v1.OrderService");
    }
    routes.add_service(reflection.build_v1().expect("the examples' compiled-in descriptors are valid"));
    tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

/// A status whose details hold one google.rpc error detail message.
fn status_with_detail(code: Code, message: &str, type_name: &str, detail: impl Message) -> Status {
    let details = rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: format!("type.googleapis.com/{type_name}"),
            value: detail.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

fn bad_request(field: &str, description: &str) -> Status {
    let detail = rpc::BadRequest {
        field_violations: vec![rpc::bad_request::FieldViolation {
            field: field.to_owned(),
            description: description.to_owned(),
            ..Default::default()
        }],
    };
    status_with_detail(Code::InvalidArgument, description, "google.rpc.BadRequest", detail)
}

fn not_found(kind: &str, name: &str) -> Status {
    let detail = rpc::ResourceInfo {
        resource_type: kind.to_owned(),
        resource_name: name.to_owned(),
        description: format!("no {kind} has id {name:?}"),
        ..Default::default()
    };
    status_with_detail(Code::NotFound, &format!("{kind} {name:?} not found"), "google.rpc.ResourceInfo", detail)
}

/// A response with the HTTP status protogate should answer with (the `x-http-code` metadata).
fn with_http_code<T>(message: T, code: &'static str) -> Response<T> {
    let mut response = Response::new(message);
    response.metadata_mut().insert("x-http-code", MetadataValue::from_static(code));
    response
}

fn served_by<T>(mut response: Response<T>, service: &'static str) -> Response<T> {
    response.metadata_mut().insert("x-served-by", MetadataValue::from_static(service));
    response
}

// === users ===

/// The user directory.
pub struct Users {
    state: Mutex<Directory>,
}

struct Directory {
    users: BTreeMap<u64, User>,
    next_id: u64,
}

impl Users {
    /// Three well-known users.
    pub fn seeded() -> Users {
        let mut users = BTreeMap::new();
        let seed = [
            ("ada@example.com", "Ada Lovelace", Role::Admin, "London"),
            ("alan@example.com", "Alan Turing", Role::Member, "Manchester"),
            ("grace@example.com", "Grace Hopper", Role::Member, "Arlington"),
        ];
        for (i, (email, name, role, city)) in seed.into_iter().enumerate() {
            let id = i as u64 + 1;
            users.insert(
                id,
                User {
                    id: id.to_string(),
                    email: email.into(),
                    display_name: name.into(),
                    role: role.into(),
                    tags: vec!["founder".into()],
                    address: Some(Address { city: city.into(), country: "GB".into(), ..Default::default() }),
                    create_time: Some(prost_types::Timestamp { seconds: 1_700_000_000 + i as i64, nanos: 0 }),
                    order_count: 0,
                },
            );
        }
        Users { state: Mutex::new(Directory { users, next_id: 4 }) }
    }
}

fn parse_id(id: &str, kind: &str) -> Result<u64, Status> {
    id.parse().map_err(|_| not_found(kind, id))
}

fn validate_email(email: &str) -> Result<(), Status> {
    if email.contains('@') { Ok(()) } else { Err(bad_request("user.email", "email must contain '@'")) }
}

#[tonic::async_trait]
impl UserService for Users {
    async fn list_users(&self, request: Request<ListUsersRequest>) -> Result<Response<ListUsersResponse>, Status> {
        let request = request.into_inner();
        let page_size = match request.page_size {
            0 => 10,
            n @ 1..=100 => n as usize,
            _ => return Err(bad_request("page_size", "page_size must be between 0 and 100")),
        };
        let start: u64 = if request.page_token.is_empty() {
            0
        } else {
            request.page_token.parse().map_err(|_| bad_request("page_token", "unknown page token"))?
        };
        let state = self.state.lock().unwrap();
        let matching: Vec<&User> =
            state.users.values().filter(|u| request.role == 0 || u.role == request.role).collect();
        let page: Vec<User> = matching
            .iter()
            .filter(|u| u.id.parse::<u64>().unwrap_or(0) > start)
            .take(page_size)
            .map(|u| (*u).clone())
            .collect();
        let next_page_token = match page.last() {
            Some(last) if matching.iter().any(|u| u.id.parse::<u64>().unwrap_or(0) > last.id.parse().unwrap_or(0)) => {
                last.id.clone()
            }
            _ => String::new(),
        };
        let response = ListUsersResponse { total_size: matching.len() as i32, users: page, next_page_token };
        Ok(served_by(Response::new(response), "users"))
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id, "user")?;
        let mut user =
            self.state.lock().unwrap().users.get(&id).cloned().ok_or_else(|| not_found("user", &request.id))?;
        if request.view != View::Full as i32 {
            user.address = None;
        }
        Ok(served_by(Response::new(user), "users"))
    }

    async fn create_user(&self, request: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        let mut user = request.into_inner().user.ok_or_else(|| bad_request("user", "user is required"))?;
        validate_email(&user.email)?;
        let mut state = self.state.lock().unwrap();
        if state.users.values().any(|u| u.email == user.email) {
            let detail = rpc::ErrorInfo {
                reason: "EMAIL_TAKEN".into(),
                domain: "users.example.com".into(),
                metadata: [("email".to_owned(), user.email.clone())].into(),
            };
            return Err(status_with_detail(
                Code::AlreadyExists,
                "email is already registered",
                "google.rpc.ErrorInfo",
                detail,
            ));
        }
        let id = state.next_id;
        state.next_id += 1;
        user.id = id.to_string();
        user.create_time = Some(now());
        user.order_count = 0;
        state.users.insert(id, user.clone());
        Ok(served_by(with_http_code(user, "201"), "users"))
    }

    async fn update_user(&self, request: Request<UpdateUserRequest>) -> Result<Response<User>, Status> {
        let request = request.into_inner();
        let patch = request.user.ok_or_else(|| bad_request("user", "user is required"))?;
        let id = parse_id(&patch.id, "user")?;
        let mut state = self.state.lock().unwrap();
        let user = state.users.get_mut(&id).ok_or_else(|| not_found("user", &patch.id))?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(bad_request("update_mask", "update_mask names no field"));
        }
        let mut updated = user.clone();
        for path in &paths {
            match path.as_str() {
                "email" => {
                    validate_email(&patch.email)?;
                    updated.email = patch.email.clone();
                }
                "display_name" => updated.display_name = patch.display_name.clone(),
                "role" => updated.role = patch.role,
                "tags" => updated.tags = patch.tags.clone(),
                "address" => updated.address = patch.address.clone(),
                p if p.starts_with("address.") => {
                    let from = patch.address.clone().unwrap_or_default();
                    let to = updated.address.get_or_insert_with(Address::default);
                    match &p["address.".len()..] {
                        "street" => to.street = from.street,
                        "city" => to.city = from.city,
                        "postal_code" => to.postal_code = from.postal_code,
                        "country" => to.country = from.country,
                        _ => return Err(bad_request("update_mask", &format!("{p} is not a field of User"))),
                    }
                }
                other => return Err(bad_request("update_mask", &format!("{other} cannot be updated"))),
            }
        }
        *user = updated.clone();
        Ok(served_by(Response::new(updated), "users"))
    }

    async fn delete_user(&self, request: Request<DeleteUserRequest>) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id, "user")?;
        self.state.lock().unwrap().users.remove(&id).ok_or_else(|| not_found("user", &request.id))?;
        Ok(served_by(with_http_code((), "204"), "users"))
    }
}

// === orders ===

/// The order book.
pub struct Orders {
    state: Mutex<OrderBook>,
    /// Every order placed or changed, for the watchers.
    changes: tokio::sync::broadcast::Sender<Order>,
}

struct OrderBook {
    orders: BTreeMap<u64, Order>,
    next_id: u64,
}

impl Orders {
    /// Two orders of user 1, one of them shipped.
    pub fn seeded() -> Orders {
        let mut orders = BTreeMap::new();
        for (id, state, sku) in [(1u64, OrderState::Shipped, "BOOK-1843"), (2, OrderState::Pending, "LOOM-PUNCH-CARDS")]
        {
            let items = vec![pb::orders::LineItem { sku: sku.into(), quantity: 1, unit_price_micros: 25_000_000 }];
            orders.insert(
                id,
                Order {
                    id: id.to_string(),
                    user_id: "1".into(),
                    total_micros: 25_000_000,
                    currency: "GBP".into(),
                    state: state.into(),
                    create_time: Some(prost_types::Timestamp { seconds: 1_700_000_100 + id as i64, nanos: 0 }),
                    items,
                    cancel_reason: String::new(),
                },
            );
        }
        let (changes, _) = tokio::sync::broadcast::channel(256);
        Orders { state: Mutex::new(OrderBook { orders, next_id: 3 }), changes }
    }

    /// Validates and stores a new order.
    fn place(&self, request: CreateOrderRequest) -> Result<Order, Status> {
        let mut order = request.order.unwrap_or_default();
        if order.items.is_empty() {
            return Err(bad_request("order.items", "an order needs at least one item"));
        }
        if let Some(i) = order.items.iter().position(|item| item.quantity == 0) {
            return Err(bad_request(&format!("order.items[{i}].quantity"), "quantity must be at least 1"));
        }
        let mut state = self.state.lock().unwrap();
        let id = state.next_id;
        state.next_id += 1;
        order.id = id.to_string();
        order.user_id = request.user_id;
        order.total_micros = order.items.iter().map(|i| i.unit_price_micros * i64::from(i.quantity)).sum();
        if order.currency.is_empty() {
            order.currency = "GBP".into();
        }
        order.state = OrderState::Pending.into();
        order.create_time = Some(now());
        state.orders.insert(id, order.clone());
        // Nobody watching is fine.
        let _ = self.changes.send(order.clone());
        Ok(order)
    }

    fn get(&self, id: &str) -> Result<Order, Status> {
        let key = parse_id(id, "order")?;
        self.state.lock().unwrap().orders.get(&key).cloned().ok_or_else(|| not_found("order", id))
    }
}

type OrderStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Order, Status>> + Send>>;

#[tonic::async_trait]
impl OrderService for Orders {
    type WatchOrdersStream = OrderStream;
    type TrackOrdersStream = OrderStream;

    async fn list_orders(&self, request: Request<ListOrdersRequest>) -> Result<Response<ListOrdersResponse>, Status> {
        let request = request.into_inner();
        let limit = if request.page_size <= 0 { 20 } else { request.page_size as usize };
        let state = self.state.lock().unwrap();
        let orders: Vec<Order> = state
            .orders
            .values()
            .rev()
            .filter(|o| o.user_id == request.user_id && (request.state == 0 || o.state == request.state))
            .take(limit)
            .cloned()
            .collect();
        Ok(served_by(Response::new(ListOrdersResponse { orders }), "orders"))
    }

    async fn get_order(&self, request: Request<GetOrderRequest>) -> Result<Response<Order>, Status> {
        let order = self.get(&request.into_inner().id)?;
        Ok(served_by(Response::new(order), "orders"))
    }

    async fn create_order(&self, request: Request<CreateOrderRequest>) -> Result<Response<Order>, Status> {
        let order = self.place(request.into_inner())?;
        Ok(served_by(with_http_code(order, "201"), "orders"))
    }

    async fn watch_orders(&self, request: Request<WatchOrdersRequest>) -> Result<Response<OrderStream>, Status> {
        let user_id = request.into_inner().user_id;
        // Subscribed before the snapshot, so no change falls between the two.
        let changes = tokio_stream::wrappers::BroadcastStream::new(self.changes.subscribe());
        let now: Vec<Order> =
            self.state.lock().unwrap().orders.values().filter(|o| o.user_id == user_id).cloned().collect();
        let later = changes.filter_map(move |change| match change {
            Ok(order) if order.user_id == user_id => Some(Ok(order)),
            Ok(_) => None,
            Err(lagged) => Some(Err(Status::data_loss(format!("the watch fell behind: {lagged}")))),
        });
        let stream = tokio_stream::iter(now.into_iter().map(Ok)).chain(later);
        Ok(served_by(Response::new(Box::pin(stream) as OrderStream), "orders"))
    }

    async fn import_orders(
        &self,
        request: Request<tonic::Streaming<CreateOrderRequest>>,
    ) -> Result<Response<ImportOrdersResponse>, Status> {
        let mut requests = request.into_inner();
        let mut imported = ImportOrdersResponse::default();
        while let Some(request) = requests.message().await? {
            let order = self.place(request).map_err(|status| {
                Status::new(status.code(), format!("order {}: {}", imported.imported + 1, status.message()))
            })?;
            imported.imported += 1;
            imported.total_micros += order.total_micros;
            imported.order_ids.push(order.id);
        }
        Ok(served_by(Response::new(imported), "orders"))
    }

    async fn track_orders(
        &self,
        request: Request<tonic::Streaming<GetOrderRequest>>,
    ) -> Result<Response<OrderStream>, Status> {
        let orders: Vec<(u64, Order)> =
            self.state.lock().unwrap().orders.iter().map(|(id, order)| (*id, order.clone())).collect();
        let current = std::collections::BTreeMap::from_iter(orders);
        // Orders as they stood when tracking began; unknown ids end the stream with NOT_FOUND.
        let answers = request.into_inner().map(move |request| {
            let request = request?;
            let key = parse_id(&request.id, "order")?;
            current.get(&key).cloned().ok_or_else(|| not_found("order", &request.id))
        });
        Ok(served_by(Response::new(Box::pin(answers) as OrderStream), "orders"))
    }

    async fn cancel_order(&self, request: Request<CancelOrderRequest>) -> Result<Response<Order>, Status> {
        let request = request.into_inner();
        let key = parse_id(&request.id, "order")?;
        let mut state = self.state.lock().unwrap();
        let order = state.orders.get_mut(&key).ok_or_else(|| not_found("order", &request.id))?;
        if order.state != OrderState::Pending as i32 {
            let detail = rpc::PreconditionFailure {
                violations: vec![rpc::precondition_failure::Violation {
                    r#type: "STATE".into(),
                    subject: format!("orders/{}", order.id),
                    description: format!(
                        "order is {}, only PENDING orders can be cancelled",
                        order.state().as_str_name()
                    ),
                }],
            };
            return Err(status_with_detail(
                Code::FailedPrecondition,
                "only pending orders can be cancelled",
                "google.rpc.PreconditionFailure",
                detail,
            ));
        }
        order.state = OrderState::Cancelled.into();
        order.cancel_reason = request.reason;
        let _ = self.changes.send(order.clone());
        Ok(served_by(Response::new(order.clone()), "orders"))
    }
}
