//! Step 1 of the pipeline: HTTP method + path → [`RouteMatch`].
//!
//! [`TableBuilder`] arranges every route's template in a trie of path segments once; a lookup
//! then walks one branch per segment, so its cost depends on the path's length, not on the
//! number of routes.
//!
//! Where several templates match, the most specific wins, segment by segment: a literal beats
//! `*`, which beats `**`; a template with the path's `:verb` beats one without. Two routes of
//! the same HTTP method and the same template shape are a conflict: the first keeps the path
//! and the second is reported by [`Table::conflicts`].
//!
//! Variable values are percent-decoded as http.proto says: a single-segment variable fully, a
//! multi-segment one except for reserved characters (so `%2F` stays, and a value cannot invent
//! path segments).

use std::borrow::Cow;
use std::ops::ControlFlow;

use http::Method;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::route::rule::Route;
use crate::route::template::{PathTemplate, Segment};

/// What a table routes to: a method's route, or a composite route of several calls.
pub trait Routable {
    /// The HTTP method.
    fn http_method(&self) -> &Method;
    /// The path template.
    fn template(&self) -> &PathTemplate;
    /// The path variables whose values a match returns, in order.
    fn variables(&self) -> impl Iterator<Item = VariableSpan<'_>>;
}

/// Where one path variable sits in a template, and how its value is decoded.
#[derive(Clone, Copy)]
pub struct VariableSpan<'a> {
    /// The template segments the variable spans (`start..end`).
    pub start: usize,
    /// One past the last segment.
    pub end: usize,
    /// Whether the variable may span several segments (its value keeps `%2F` encoded).
    pub multi_segment: bool,
    /// What the variable is called, for errors.
    pub name: &'a dyn std::fmt::Display,
}

/// Collects routes; [`TableBuilder::build`] freezes them into a [`Table`].
#[derive(Debug)]
pub struct TableBuilder<R = Route> {
    routes: Vec<R>,
}

impl<R> Default for TableBuilder<R> {
    fn default() -> Self {
        TableBuilder { routes: Vec::new() }
    }
}

/// The immutable route table.
#[derive(Debug)]
pub struct Table<R = Route> {
    routes: Vec<R>,
    nodes: Vec<Node>,
    conflicts: Vec<Conflict>,
}

/// Two routes with the same HTTP method and template shape: `shadowed` can never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// Index (in [`Table::routes`]) of the route that matches.
    pub winner: usize,
    /// Index of the route that never matches.
    pub shadowed: usize,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup<'t, R = Route> {
    /// A route matched.
    Matched(RouteMatch<'t, R>),
    /// No template matches the path.
    NotFound,
    /// Templates match the path, but under other HTTP methods.
    MethodNotAllowed {
        /// The methods that would match, for the `Allow` header.
        allow: Vec<Method>,
    },
    /// The path cannot be routed at all.
    InvalidPath {
        /// Why.
        reason: String,
    },
}

/// A matched route and the decoded values of its path variables.
#[derive(Debug)]
pub struct RouteMatch<'t, R = Route> {
    /// Index of the route in [`Table::routes`].
    pub index: usize,
    /// The route.
    pub route: &'t R,
    /// One value per entry of `route.bindings`, percent-decoded.
    pub values: Vec<String>,
}

/// A path split at `/`: on the stack for all but unusually deep paths.
type Segments<'p> = SmallVec<[&'p str; 16]>;

#[derive(Debug, Default)]
struct Node {
    // Keys come from the configuration, never from clients: a fast hash is safe.
    literals: FxHashMap<Box<str>, usize>,
    wildcard: Option<usize>,
    /// Routes whose template ends at this node.
    ends: Vec<Leaf>,
    /// Routes whose template ends with `**` after this node.
    deep: Vec<Leaf>,
}

#[derive(Debug)]
struct Leaf {
    verb: Option<Box<str>>,
    methods: Vec<(Method, usize)>,
}

// === impl TableBuilder ===

impl<R: Routable> TableBuilder<R> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route; earlier routes win conflicts.
    pub fn push(&mut self, route: R) -> &mut Self {
        self.routes.push(route);
        self
    }

    /// Builds the trie.
    pub fn build(self) -> Table<R> {
        self.build_where(|_| true)
    }

    /// Builds the trie of the routes that `routed` keeps; the others stay in
    /// [`Table::routes`] (a door other than the table may reach them) but no lookup finds them.
    pub fn build_where(self, routed: impl Fn(&R) -> bool) -> Table<R> {
        let mut table = Table { routes: self.routes, nodes: vec![Node::default()], conflicts: Vec::new() };
        for index in 0..table.routes.len() {
            if routed(&table.routes[index]) {
                table.insert(index);
            }
        }
        table
    }
}

impl<R> Extend<R> for TableBuilder<R> {
    fn extend<I: IntoIterator<Item = R>>(&mut self, iter: I) {
        self.routes.extend(iter);
    }
}

// === impl Table ===

impl<R: Routable> Table<R> {
    /// Every route, in the order they were added.
    pub fn routes(&self) -> &[R] {
        &self.routes
    }

    /// Routes that can never match because an earlier route has the same method and shape.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    fn insert(&mut self, index: usize) {
        let route = &self.routes[index];
        let method = route.http_method().clone();
        let verb = route.template().verb().map(Box::from);
        let segments = route.template().segments().to_vec();
        let mut node = 0;
        let mut deep = false;
        for segment in &segments {
            node = match segment {
                Segment::Literal(text) => match self.nodes[node].literals.get(text.as_str()) {
                    Some(&child) => child,
                    None => {
                        let child = self.new_node();
                        self.nodes[node].literals.insert(text.as_str().into(), child);
                        child
                    }
                },
                Segment::Wildcard => match self.nodes[node].wildcard {
                    Some(child) => child,
                    None => {
                        let child = self.new_node();
                        self.nodes[node].wildcard = Some(child);
                        child
                    }
                },
                Segment::DeepWildcard => {
                    deep = true;
                    break;
                }
            };
        }
        let leaves = if deep { &mut self.nodes[node].deep } else { &mut self.nodes[node].ends };
        let leaf = match leaves.iter().position(|l| l.verb == verb) {
            Some(i) => &mut leaves[i],
            None => {
                leaves.push(Leaf { verb, methods: Vec::new() });
                let last = leaves.len() - 1;
                &mut leaves[last]
            }
        };
        match leaf.methods.iter().find(|(m, _)| *m == method) {
            Some(&(_, winner)) => self.conflicts.push(Conflict { winner, shadowed: index }),
            None => leaf.methods.push((method, index)),
        }
    }

    fn new_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Finds the route for `method` and `path` (the URI path, without the query).
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_, R> {
        let Some(rest) = path.strip_prefix('/') else {
            return Lookup::NotFound;
        };
        let segments: Segments<'_> = rest.split('/').collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Lookup::InvalidPath { reason: "the path contains a '.' or '..' segment".into() };
        }
        let mut found = None;
        self.each_match(&segments, |index, segs| {
            let route = &self.routes[index];
            if route.http_method() == method {
                found = Some(match bound_values(route, segs) {
                    Ok(values) => Lookup::Matched(RouteMatch { index, route, values }),
                    Err(reason) => Lookup::InvalidPath { reason },
                });
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if let Some(found) = found {
            return found;
        }
        let mut allow: Vec<Method> = Vec::new();
        self.each_match(&segments, |index, _| {
            let method = self.routes[index].http_method();
            if !allow.contains(method) {
                allow.push(method.clone());
            }
            ControlFlow::Continue(())
        });
        if allow.is_empty() { Lookup::NotFound } else { Lookup::MethodNotAllowed { allow } }
    }

    /// Calls `visit` with every route matching the path, most specific first, together with the
    /// segments it matched (the last one without its verb when the route has one).
    fn each_match(&self, segments: &[&str], mut visit: impl FnMut(usize, &[&str]) -> ControlFlow<()>) {
        // A verb can only be the suffix of the last segment: try the routes with that verb first,
        // then the whole segment as an ordinary one.
        if let Some((last, head)) = segments.split_last()
            && let Some((stem, verb)) = last.rsplit_once(':')
        {
            let mut trimmed: Segments<'_> = head.iter().copied().collect();
            trimmed.push(stem);
            let flow = self.walk(0, &trimmed, 0, Some(verb), &mut |index| visit(index, &trimmed));
            if flow.is_break() {
                return;
            }
        }
        let _ = self.walk(0, segments, 0, None, &mut |index| visit(index, segments));
    }

    fn walk(
        &self,
        node: usize,
        segments: &[&str],
        i: usize,
        verb: Option<&str>,
        visit: &mut dyn FnMut(usize) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let node = &self.nodes[node];
        match segments.get(i) {
            None => visit_leaves(&node.ends, verb, visit)?,
            Some(segment) => {
                if let Some(&child) = node.literals.get(*segment) {
                    self.walk(child, segments, i + 1, verb, visit)?;
                }
                if let Some(child) = node.wildcard.filter(|_| !segment.is_empty()) {
                    self.walk(child, segments, i + 1, verb, visit)?;
                }
            }
        }
        visit_leaves(&node.deep, verb, visit)
    }
}

fn visit_leaves(
    leaves: &[Leaf],
    verb: Option<&str>,
    visit: &mut dyn FnMut(usize) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for leaf in leaves.iter().filter(|l| l.verb.as_deref() == verb) {
        for &(_, index) in &leaf.methods {
            visit(index)?;
        }
    }
    ControlFlow::Continue(())
}

/// The decoded value of each path variable of `route`, given the segments it matched.
fn bound_values(route: &impl Routable, segments: &[&str]) -> Result<Vec<String>, String> {
    let template_len = route.template().segments().len();
    let deep = route.template().ends_with_deep_wildcard();
    route
        .variables()
        .map(|binding| {
            // Segments before a trailing `**` map one to one; `**` takes whatever is left.
            let end = if deep && binding.end == template_len { segments.len() } else { binding.end };
            let raw = match segments.get(binding.start..end) {
                Some([one]) => Cow::Borrowed(*one),
                Some(several) => Cow::Owned(several.join("/")),
                None => Cow::Borrowed(""),
            };
            let decoded = if binding.multi_segment { decode_reserved_expansion(&raw) } else { decode_all(&raw) };
            decoded.ok_or_else(|| format!("path variable {} is not valid UTF-8 once percent-decoded", binding.name))
        })
        .collect()
}

/// Percent-decodes everything (single-segment variables).
pub fn decode_all(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw).decode_utf8().ok().map(|s| s.into_owned())
}

/// Percent-decodes all but RFC 6570's reserved characters (multi-segment variables), so
/// `a%2Fb` stays one segment's worth of text.
pub fn decode_reserved_expansion(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(&[hi, lo])) => hex_value(hi).zip(hex_value(lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match decoded {
            Some(b) if !is_reserved(b) => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn is_reserved(b: u8) -> bool {
    b":/?#[]@!$&'()*+,;=".contains(&b)
}

impl Routable for Route {
    fn http_method(&self) -> &Method {
        &self.http_method
    }

    fn template(&self) -> &PathTemplate {
        &self.template
    }

    fn variables(&self) -> impl Iterator<Item = VariableSpan<'_>> {
        self.bindings.iter().map(|binding| VariableSpan {
            start: binding.start,
            end: binding.end,
            multi_segment: binding.multi_segment,
            name: &binding.field,
        })
    }
}

#[cfg(test)]
mod tests;
