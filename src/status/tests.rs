use super::*;
use crate::test_util;

#[test]
fn every_code_maps_as_the_contract_says() {
    let table = [
        (Code::Ok, 200),
        (Code::Cancelled, 499),
        (Code::Unknown, 500),
        (Code::InvalidArgument, 400),
        (Code::DeadlineExceeded, 504),
        (Code::NotFound, 404),
        (Code::AlreadyExists, 409),
        (Code::PermissionDenied, 403),
        (Code::Unauthenticated, 401),
        (Code::ResourceExhausted, 429),
        (Code::FailedPrecondition, 400),
        (Code::Aborted, 409),
        (Code::OutOfRange, 400),
        (Code::Unimplemented, 501),
        (Code::Internal, 500),
        (Code::Unavailable, 503),
        (Code::DataLoss, 500),
    ];
    assert_eq!(table.len(), 17, "every gRPC code");
    for (code, http) in table {
        assert_eq!(http_status(code).as_u16(), http, "{code:?}");
    }
}

#[test]
fn the_body_has_code_message_and_details_in_order() {
    let body = StatusBody { code: 5, message: "gone \"x\"", details: Vec::new() }.to_json();
    assert_eq!(String::from_utf8(body).unwrap(), r#"{"code":5,"message":"gone \"x\"","details":[]}"#);
}

fn encoded_status(details: Vec<prost_types::Any>) -> Vec<u8> {
    rpc::Status { code: 3, message: "m".into(), details }.encode_to_vec()
}

#[test]
fn known_details_render_as_json_with_their_type() {
    let pool = test_util::pool();
    let options = JsonOptions::default();
    let encoded = bad_request(Code::InvalidArgument, "m", "shelf.id", "must be positive");
    let details = render_details(&encoded, &pool, &options);
    assert_eq!(
        serde_json::to_string(&details).unwrap(),
        r#"[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"shelf.id","description":"must be positive"}]}]"#
    );
    // A detail type from the loaded descriptors (not google.rpc) is rendered too.
    let shelf = crate::pb::google::rpc::ResourceInfo { resource_name: "r".into(), ..Default::default() };
    let any = |type_url: &str, value: Vec<u8>| prost_types::Any { type_url: type_url.into(), value };
    let user_type = any("type.googleapis.com/protogate.testing.v1.Shelf", vec![0x08, 0x07, 0x12, 0x01, b'x']);
    let details = render_details(
        &encoded_status(vec![any("type.googleapis.com/google.rpc.ResourceInfo", shelf.encode_to_vec()), user_type]),
        &pool,
        &options,
    );
    assert_eq!(
        serde_json::to_string(&details).unwrap(),
        r#"[{"@type":"type.googleapis.com/google.rpc.ResourceInfo","resourceName":"r"},{"@type":"type.googleapis.com/protogate.testing.v1.Shelf","id":"7","theme":"x"}]"#
    );
}

#[test]
fn unknown_or_broken_details_keep_their_bytes() {
    let pool = test_util::pool();
    let unknown = prost_types::Any { type_url: "type.googleapis.com/acme.Secret".into(), value: vec![1, 2, 3] };
    let details = render_details(&encoded_status(vec![unknown]), &pool, &JsonOptions::default());
    assert_eq!(
        serde_json::to_string(&details).unwrap(),
        r#"[{"@type":"type.googleapis.com/acme.Secret","value":"AQID"}]"#
    );
    // A known type whose bytes do not decode.
    let broken = prost_types::Any { type_url: "type.googleapis.com/google.rpc.BadRequest".into(), value: vec![0xff] };
    let details = render_details(&encoded_status(vec![broken]), &pool, &JsonOptions::default());
    assert_eq!(details[0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
    assert_eq!(details[0]["value"], "/w==");
    // Details that are not a google.rpc.Status at all.
    let details = render_details(&[0xff, 0xff], &pool, &JsonOptions::default());
    assert_eq!(details[0]["@type"], "type.googleapis.com/google.rpc.Status");
    assert!(render_details(&[], &pool, &JsonOptions::default()).is_empty());
}
