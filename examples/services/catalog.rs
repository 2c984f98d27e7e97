//! The benchmark upstream: a catalog answering from memory, with messages a little larger than
//! those the performance goals speak of (~300 B, ~15 KB): one item is ~470 B of JSON, a page of
//! 50 ~24 KB.

#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use tonic::{Request, Response, Status};

/// Generated messages and service stubs.
pub mod pb {
    tonic::include_proto!("protogate.bench.v1");
}

use pb::catalog_server::{Catalog, CatalogServer};
use pb::{
    Category, CreateItemRequest, Dimensions, ExportItemsRequest, GetItemRequest, ImportItemsResponse, Item,
    ListItemsRequest, ListItemsResponse,
};
use prost::Message;

/// A deterministic, realistic item.
pub fn item(i: u64) -> Item {
    Item {
        id: format!("item-{i:06}"),
        name: format!("Stainless steel kettle, model {i}"),
        description: "1.7 litre, rapid boil, limescale filter, cordless base with 360° swivel".into(),
        price_micros: 34_990_000 + i as i64 * 10_000,
        currency: "EUR".into(),
        stock: (i % 97) as i32,
        category: Category::Kitchen.into(),
        tags: vec!["kitchen".into(), "electric".into(), "bestseller".into()],
        create_time: Some(prost_types::Timestamp { seconds: 1_700_000_000 + i as i64, nanos: 0 }),
        update_time: Some(prost_types::Timestamp { seconds: 1_730_000_000 + i as i64, nanos: 250_000_000 }),
        dimensions: Some(Dimensions { width_cm: 22.5, height_cm: 25.0, depth_cm: 16.5, weight_kg: 1.2 }),
        rating: 4.6,
        available: true,
        seller_id: format!("seller-{}", i % 13),
    }
}

/// A page of `n` items.
pub fn page(n: u64) -> ListItemsResponse {
    ListItemsResponse { items: (0..n).map(item).collect(), next_page_token: "page-2".into(), total_size: 5_000 }
}

/// The service.
#[derive(Debug, Default)]
pub struct CatalogService;

impl CatalogService {
    pub fn server() -> CatalogServer<CatalogService> {
        CatalogServer::new(CatalogService)
    }
}

type ItemStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Item, Status>> + Send>>;

#[tonic::async_trait]
impl Catalog for CatalogService {
    type ExportItemsStream = ItemStream;

    async fn get_item(&self, request: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        let id = request.into_inner().id;
        let mut found = item(42);
        found.id = id;
        Ok(Response::new(found))
    }

    async fn list_items(&self, request: Request<ListItemsRequest>) -> Result<Response<ListItemsResponse>, Status> {
        let size = match request.into_inner().page_size {
            n @ 1..=1000 => n as u64,
            _ => 50,
        };
        Ok(Response::new(page(size)))
    }

    async fn create_item(&self, request: Request<CreateItemRequest>) -> Result<Response<Item>, Status> {
        let mut created = request.into_inner().item.unwrap_or_default();
        created.id = "item-000001".into();
        Ok(Response::new(created))
    }

    async fn export_items(&self, request: Request<ExportItemsRequest>) -> Result<Response<ItemStream>, Status> {
        let count = request.into_inner().count.max(0) as u64;
        let items = tokio_stream::iter((0..count).map(|i| Ok(item(i))));
        Ok(Response::new(Box::pin(items)))
    }

    async fn import_items(
        &self,
        request: Request<tonic::Streaming<Item>>,
    ) -> Result<Response<ImportItemsResponse>, Status> {
        let mut items = request.into_inner();
        let mut summary = ImportItemsResponse::default();
        while let Some(item) = items.message().await? {
            summary.count += 1;
            summary.bytes += item.encoded_len() as i64;
        }
        Ok(Response::new(summary))
    }
}
