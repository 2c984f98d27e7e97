//! Fixtures for unit tests: the compiled `proto/protogate/testing` descriptors and routes.

use std::path::PathBuf;

use prost_reflect::{DescriptorPool, MethodDescriptor};

use crate::descriptors::{self, Descriptors};
use crate::route::{Route, Table, TableBuilder, rule};

/// The descriptor set build.rs compiles from the test fixtures.
pub(crate) fn fixture_path() -> PathBuf {
    PathBuf::from(concat!(env!("OUT_DIR"), "/testing.binpb"))
}

pub(crate) fn fixtures() -> Descriptors {
    descriptors::load(&[fixture_path()]).expect("the test fixtures load")
}

pub(crate) fn pool() -> DescriptorPool {
    fixtures().pool
}

pub(crate) fn method(name: &str) -> MethodDescriptor {
    let (service, method) = name.rsplit_once('.').expect("pkg.Service.Method");
    pool()
        .get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == method))
        .unwrap_or_else(|| panic!("no method {name}"))
}

pub(crate) fn routes() -> Vec<Route> {
    let d = fixtures();
    let (routes, errors) = rule::build_routes(&d.pool, &d.http_rules);
    assert!(errors.is_empty(), "{errors:?}");
    routes
}

pub(crate) fn table() -> Table {
    let mut builder = TableBuilder::new();
    builder.extend(routes());
    builder.build()
}
