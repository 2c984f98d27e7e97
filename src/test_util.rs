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

/// A small deterministic generator (xorshift64*) for tests that sample many inputs: the same
/// inputs on every run, no dependency.
pub(crate) struct Gen(u64);

impl Gen {
    /// A generator from `seed` (any value; zero is made odd, since xorshift stays at zero).
    pub(crate) fn new(seed: u64) -> Gen {
        Gen(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in a hundred.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub(crate) fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}
