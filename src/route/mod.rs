//! Routing: templates (parsed once), routes (rules expanded once), and the table that matches
//! requests against them.

pub mod rule;
pub mod table;
pub mod template;

pub use rule::{Binding, BodySelector, FieldPath, Route, RouteError, RouteOrigin};
pub use table::{Lookup, RouteMatch, Table, TableBuilder};
pub use template::PathTemplate;
