//! Build time: a `google.api.http` path template parsed into [`PathTemplate`].
//!
//! The grammar is http.proto's:
//!
//! ```text
//! Template  = "/" Segments [ Verb ] ;
//! Segments  = Segment { "/" Segment } ;
//! Segment   = "*" | "**" | LITERAL | Variable ;
//! Variable  = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb      = ":" LITERAL ;
//! ```
//!
//! `**` matches zero or more segments and must be the last segment. `{var}` is short for
//! `{var=*}`. Variables do not nest.

use std::fmt;

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
    verb: Option<String>,
    variables: Vec<Variable>,
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `*`: any one segment.
    Wildcard,
    /// `**`: any number of segments, including none; always last.
    DeepWildcard,
}

/// A `{field.path=...}` variable, spanning template segments `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The dotted field path, split at the dots.
    pub field_path: Vec<String>,
    /// Index of the first segment the variable covers.
    pub start: usize,
    /// One past the last segment it covers.
    pub end: usize,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template {template:?}: {reason} (at byte {at})")]
pub struct TemplateError {
    /// The template text.
    pub template: String,
    /// Byte offset of the problem.
    pub at: usize,
    /// What is wrong.
    pub reason: &'static str,
}

// === impl PathTemplate ===

impl PathTemplate {
    /// Parses a template such as `/v1/{name=shelves/*/books/*}:archive`.
    pub fn parse(text: &str) -> Result<PathTemplate, TemplateError> {
        let mut parser = Parser { text, pos: 0, segments: Vec::new(), variables: Vec::new() };
        parser.template().map_err(|(at, reason)| TemplateError { template: text.to_owned(), at, reason })?;
        let verb = parser.verb().map_err(|(at, reason)| TemplateError { template: text.to_owned(), at, reason })?;
        Ok(PathTemplate { segments: parser.segments, verb, variables: parser.variables })
    }

    /// A template of literal segments only, e.g. `/pkg.Service/Method`.
    pub fn literal(segments: &[&str]) -> PathTemplate {
        PathTemplate {
            segments: segments.iter().map(|s| Segment::Literal((*s).to_owned())).collect(),
            verb: None,
            variables: Vec::new(),
        }
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The `:verb` suffix, if any.
    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// The variables, in order of appearance.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// Whether the last segment is `**`.
    pub fn ends_with_deep_wildcard(&self) -> bool {
        self.segments.last() == Some(&Segment::DeepWildcard)
    }

    /// The shape of the paths this template matches, with variable names erased: two routes
    /// of one HTTP method with the same shape are ambiguous.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Wildcard => out.push('*'),
                Segment::DeepWildcard => out.push_str("**"),
            }
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }
}

impl Variable {
    /// Whether the variable may span several path segments, which changes how its value is
    /// percent-decoded (http.proto: reserved expansion keeps `%2F`).
    pub fn is_multi_segment(&self, template: &PathTemplate) -> bool {
        self.end - self.start > 1
            || template.segments.get(self.start..self.end).is_some_and(|s| s.contains(&Segment::DeepWildcard))
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        while i < self.segments.len() {
            f.write_str("/")?;
            match self.variables.iter().find(|v| v.start == i) {
                Some(var) => {
                    write!(f, "{{{}", var.field_path.join("."))?;
                    let inner = &self.segments[var.start..var.end];
                    if inner != [Segment::Wildcard] {
                        f.write_str("=")?;
                        for (j, segment) in inner.iter().enumerate() {
                            if j > 0 {
                                f.write_str("/")?;
                            }
                            write!(f, "{segment}")?;
                        }
                    }
                    f.write_str("}")?;
                    i = var.end;
                }
                None => {
                    write!(f, "{}", self.segments[i])?;
                    i += 1;
                }
            }
        }
        if let Some(verb) = &self.verb {
            write!(f, ":{verb}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Literal(text) => f.write_str(text),
            Segment::Wildcard => f.write_str("*"),
            Segment::DeepWildcard => f.write_str("**"),
        }
    }
}

// === parser ===

type ParseResult<T> = Result<T, (usize, &'static str)>;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn template(&mut self) -> ParseResult<()> {
        if !self.eat(b'/') {
            return Err((self.pos, "a template starts with '/'"));
        }
        self.segments_until(|b| b == b':')?;
        Ok(())
    }

    /// Segments separated by '/', up to (not including) a byte `stop` accepts or the end.
    fn segments_until(&mut self, stop: impl Fn(u8) -> bool) -> ParseResult<()> {
        loop {
            self.segment()?;
            match self.peek() {
                Some(b'/') => self.pos += 1,
                Some(b) if stop(b) => return Ok(()),
                None => return Ok(()),
                Some(_) => return Err((self.pos, "unexpected character")),
            }
        }
    }

    fn segment(&mut self) -> ParseResult<()> {
        if self.segments.last() == Some(&Segment::DeepWildcard) {
            return Err((self.pos, "'**' must be the last segment"));
        }
        match self.peek() {
            Some(b'*') => {
                self.pos += 1;
                let segment = if self.eat(b'*') { Segment::DeepWildcard } else { Segment::Wildcard };
                self.segments.push(segment);
                Ok(())
            }
            Some(b'{') => self.variable(),
            _ => {
                let literal = self.literal()?;
                self.segments.push(Segment::Literal(literal));
                Ok(())
            }
        }
    }

    fn variable(&mut self) -> ParseResult<()> {
        let open = self.pos;
        self.pos += 1;
        let field_path = self.field_path()?;
        if self.variables.iter().any(|v| v.field_path == field_path) {
            return Err((open, "the same field is bound twice"));
        }
        let start = self.segments.len();
        if self.eat(b'=') {
            if self.peek() == Some(b'{') {
                return Err((self.pos, "variables cannot nest"));
            }
            self.segments_until(|b| b == b'}')?;
        } else {
            self.segments.push(Segment::Wildcard);
        }
        if !self.eat(b'}') {
            return Err((self.pos, "expected '}' to close the variable"));
        }
        self.variables.push(Variable { field_path, start, end: self.segments.len() });
        Ok(())
    }

    fn field_path(&mut self) -> ParseResult<Vec<String>> {
        let mut path = Vec::new();
        loop {
            let start = self.pos;
            while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                self.pos += 1;
            }
            let ident = &self.text[start..self.pos];
            if ident.is_empty() || ident.as_bytes()[0].is_ascii_digit() {
                return Err((start, "expected a field name"));
            }
            path.push(ident.to_owned());
            if !self.eat(b'.') {
                return Ok(path);
            }
        }
    }

    fn literal(&mut self) -> ParseResult<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_literal_byte) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err((start, "expected a segment"));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn verb(&mut self) -> ParseResult<Option<String>> {
        if !self.eat(b':') {
            return Ok(None);
        }
        let verb = self.literal()?;
        if self.pos != self.text.len() {
            return Err((self.pos, "unexpected text after the verb"));
        }
        Ok(Some(verb))
    }
}

/// Bytes allowed in a literal: anything printable but the template's own syntax.
fn is_literal_byte(b: u8) -> bool {
    !matches!(b, b'/' | b'{' | b'}' | b'*' | b'=' | b':' | b'?' | b'#') && !b.is_ascii_control() && b != b' '
}

#[cfg(test)]
mod tests;
