//! Routing: templates (parsed once), routes (rules expanded once), and the table that matches
//! requests against them.

pub mod rule;
pub mod table;
pub mod template;

pub use rule::{Binding, BodySelector, FieldPath, Route, RouteError, RouteOrigin};
pub use table::{Lookup, Routable, RouteMatch, Table, TableBuilder, VariableSpan};
pub use template::PathTemplate;
