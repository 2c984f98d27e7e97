//! Heap allocations per request, gateway against the direct gRPC call, on the request-path
//! bench's three requests: dhat's counting allocator (in this bench only) reads how many
//! allocations, and how many bytes, one request costs once everything is warm.
//!
//! Run with `cargo bench --bench allocations`. It prints a table; it asserts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use support::catalog;

/// dhat's heap profiler as the allocator, in this bench only: it counts every allocation.
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Requests measured per row, after as many to warm up.
const REQUESTS: u64 = 500;

/// Allocations and bytes per run of `one`, averaged over [`REQUESTS`] runs.
async fn per_request<F: std::future::Future<Output = usize>>(mut one: impl FnMut() -> F) -> (f64, f64) {
    for _ in 0..REQUESTS {
        one().await;
    }
    let before = dhat::HeapStats::get();
    for _ in 0..REQUESTS {
        one().await;
    }
    let after = dhat::HeapStats::get();
    let count = after.total_blocks - before.total_blocks;
    let bytes = after.total_bytes - before.total_bytes;
    (count as f64 / REQUESTS as f64, bytes as f64 / REQUESTS as f64)
}

fn main() {
    // Counts only: no profile file is written, no backtrace kept past one frame.
    let _profiler = dhat::Profiler::builder().testing().trim_backtraces(Some(1)).build();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (router, client) = support::gateway_and_client();
        println!("{:<26} {:>14} {:>14}", "request", "allocations", "bytes");
        for (name, method, uri, body) in support::scenarios() {
            let (count, bytes) = per_request(|| support::through_gateway(&router, method, uri, &body)).await;
            println!("{:<26} {count:>14.1} {bytes:>14.0}", format!("gateway/{name}"));
        }
        let (count, bytes) = per_request(|| {
            let mut client = client.clone();
            async move {
                let request = catalog::pb::GetItemRequest { id: "item-42".into() };
                client.get_item(request).await.unwrap().into_inner().id.len()
            }
        })
        .await;
        println!("{:<26} {count:>14.1} {bytes:>14.0}", "direct_grpc/get_item");
        let (count, bytes) = per_request(|| {
            let mut client = client.clone();
            async move {
                let request = catalog::pb::ListItemsRequest { page_size: 50, ..Default::default() };
                client.list_items(request).await.unwrap().into_inner().items.len()
            }
        })
        .await;
        println!("{:<26} {count:>14.1} {bytes:>14.0}", "direct_grpc/list_50");
    });
}
