//! Descriptors from gRPC server reflection: for an upstream with `descriptors = "reflection"`,
//! the services it lists and the files that declare them (with their imports) are fetched
//! over its reflection service — `grpc.reflection.v1`, else `v1alpha` for older servers —
//! into one `FileDescriptorSet`, which the gateway loads as it would a descriptor file. The
//! files are kept as the server sent them: decoding them into `FileDescriptorProto` would drop
//! the extension options (the `google.api.http` rules) prost does not know.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{FileLite, FileSet};
use crate::config::{ReflectedSet, UpstreamConfig};

/// A file as sent, and the files it imports.
struct Fetched {
    bytes: Bytes,
    imports: Vec<String>,
}

/// How long one upstream's fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Imports the gateway has built in (well-known types, `google.api`, `google.rpc`): not asked
/// for when a server leaves them out.
const BUILT_IN: &[&str] = &["google/protobuf/", "google/api/", "google/rpc/"];

/// Services every reflecting server lists that are not its API.
const NOT_API: &[&str] = &["grpc.reflection.", "grpc.health."];

/// The sets of `upstreams`, fetched now; an upstream whose fetch fails keeps its set in
/// `previous` (what is served stays served), and the failure is logged.
pub async fn fetch_all(upstreams: &[UpstreamConfig], previous: &[ReflectedSet]) -> Vec<ReflectedSet> {
    let mut sets = Vec::new();
    for upstream in upstreams {
        match fetch_upstream(upstream).await {
            Ok(set) => sets.push(ReflectedSet { upstream: upstream.name.clone(), set: Arc::new(set) }),
            Err(reason) => {
                tracing::warn!(upstream = %upstream.name, "server reflection: {reason}; keeping what was fetched before");
                sets.extend(previous.iter().filter(|p| p.upstream == upstream.name).cloned());
            }
        }
    }
    sets
}

/// The first of the upstream's endpoints that answers.
async fn fetch_upstream(upstream: &UpstreamConfig) -> Result<Vec<u8>, String> {
    let mut failures = Vec::new();
    for endpoint in &upstream.endpoints {
        let url = endpoint.to_string();
        match tokio::time::timeout(FETCH_TIMEOUT, fetch(&url)).await {
            Ok(Ok(set)) => return Ok(set),
            Ok(Err(reason)) => failures.push(format!("{url}: {reason}")),
            Err(_) => failures.push(format!("{url}: no answer within {FETCH_TIMEOUT:?}")),
        }
    }
    Err(failures.join("; "))
}

/// The encoded `FileDescriptorSet` of the services `url` serves.
pub async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let files = match fetch_v1(channel.clone()).await {
        Err(status) if status.code() == tonic::Code::Unimplemented => fetch_v1alpha(channel).await,
        other => other,
    }
    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    let files = ordered(files)?;
    Ok(FileSet { file: files }.encode_to_vec())
}

/// The files in an order where each comes after its imports (protoc's, which loaders expect).
fn ordered(files: BTreeMap<String, Fetched>) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    let mut placed = HashSet::new();
    fn place(name: &str, files: &BTreeMap<String, Fetched>, placed: &mut HashSet<String>, out: &mut Vec<Bytes>) {
        if !placed.insert(name.to_owned()) {
            return;
        }
        let Some(file) = files.get(name) else { return };
        for import in &file.imports {
            place(import, files, placed, out);
        }
        out.push(file.bytes.clone());
    }
    for name in files.keys() {
        place(name, &files, &mut placed, &mut out);
    }
    if out.is_empty() {
        return Err("the server lists no services".into());
    }
    Ok(out)
}

/// One version of the reflection protocol, as the generated code of each spells it.
macro_rules! reflection_client {
    ($name:ident, $pb:path) => {
        async fn $name(channel: tonic::transport::Channel) -> Result<BTreeMap<String, Fetched>, tonic::Status> {
            use $pb as pb;
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;
            let (send, requests) = mpsc::channel::<pb::ServerReflectionRequest>(4);
            let request = |message| pb::ServerReflectionRequest { host: String::new(), message_request: Some(message) };
            let mut client = pb::server_reflection_client::ServerReflectionClient::new(channel);
            // Queued before the call starts (the channel has room): the server reads it first.
            let _ = send.send(request(MessageRequest::ListServices(String::new()))).await;
            let mut responses = client.server_reflection_info(ReceiverStream::new(requests)).await?.into_inner();
            let mut next = async || -> Result<MessageResponse, tonic::Status> {
                let response = responses.message().await?.ok_or_else(|| tonic::Status::unavailable("the stream ended"))?;
                match response.message_response {
                    Some(MessageResponse::ErrorResponse(e)) => {
                        Err(tonic::Status::new(tonic::Code::from(e.error_code), e.error_message))
                    }
                    Some(answer) => Ok(answer),
                    None => Err(tonic::Status::internal("an empty answer")),
                }
            };
            let MessageResponse::ListServicesResponse(listed) = next().await? else {
                return Err(tonic::Status::internal("list_services answered something else"));
            };
            let mut files = BTreeMap::new();
            let mut wanted: Vec<MessageRequest> = listed
                .service
                .into_iter()
                .filter(|s| !NOT_API.iter().any(|prefix| s.name.starts_with(prefix)))
                .map(|s| MessageRequest::FileContainingSymbol(s.name))
                .collect();
            while let Some(message) = wanted.pop() {
                send.send(request(message)).await.map_err(|_| tonic::Status::unavailable("the stream closed"))?;
                let MessageResponse::FileDescriptorResponse(found) = next().await? else {
                    return Err(tonic::Status::internal("a file request answered something else"));
                };
                for bytes in found.file_descriptor_proto {
                    let lite = FileLite::decode(bytes.as_slice())
                        .map_err(|e| tonic::Status::internal(format!("a file that does not decode: {e}")))?;
                    let name = lite.name.unwrap_or_default();
                    files.insert(name, Fetched { bytes: Bytes::from(bytes), imports: lite.dependency });
                }
                // A server may leave out files it sent earlier on the stream; ask for any
                // import still missing.
                let missing: Vec<String> = files
                    .values()
                    .flat_map(|f| f.imports.iter())
                    .filter(|d| !files.contains_key(*d) && !BUILT_IN.iter().any(|prefix| d.starts_with(prefix)))
                    .cloned()
                    .collect();
                for name in missing {
                    if !wanted.iter().any(|w| matches!(w, MessageRequest::FileByFilename(n) if *n == name)) {
                        wanted.push(MessageRequest::FileByFilename(name));
                    }
                }
            }
            Ok(files)
        }
    };
}

reflection_client!(fetch_v1, tonic_reflection::pb::v1);
reflection_client!(fetch_v1alpha, tonic_reflection::pb::v1alpha);
