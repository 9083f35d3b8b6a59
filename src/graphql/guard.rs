//! The document guard: what a GraphQL document may cost, checked in time linear in its size
//! before async-graphql parses, validates or runs it, on every transport.
//!
//! async-graphql 7.2.1 walks named fragment spreads without memoisation in its recursion-depth,
//! directive, depth and complexity checks, before validation and before any resolver can refuse
//! an anonymous caller, so a 1 KB document of fragments that each spread the next one twice costs
//! 2^levels (`docs/security.md`, "Fragment fan-out"). The guard runs first, as the schema's
//! `prepare_request` hook:
//! 1. On the text, before parsing: its size, its token count and its bracket nesting (which also
//!    bounds the parser's recursion).
//! 2. On the parsed document, with one summary per fragment (memoised): how many selections it
//!    expands to, how deep its fields nest, fragment cycles, directives per field, and how
//!    introspection nests (see [`IntrospectionLimits`]).
//!
//! Only then does async-graphql see the document, and every walk it makes is bounded by the
//! expanded size checked here.

use crate::config::ApiLimits;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Positioned, Request, ServerError, ServerResult};
use std::collections::HashMap;
use std::sync::Arc;

/// Limits on introspection, which is bounded by the schema's own shape rather than by the
/// depth limit: the standard introspection query of graphql-js nests 13 fields deep (its
/// `TypeRef` fragment follows `ofType` seven times), deeper than any query of ours needs.
#[derive(Clone, Copy, Debug)]
pub struct IntrospectionLimits {
    /// Deepest nesting of fields inside `__schema` or `__type`, counting both.
    pub max_depth: usize,
    /// Most lists that fan out over the schema (`types`, `fields`, `args`, `inputFields`,
    /// `interfaces`, `possibleTypes`, `enumValues`, `directives`) on one path. The standard
    /// query has three (`types { fields { args } }`); a circular query that asks
    /// `types { fields { type { fields { ... } } } }` has one more per level and grows with the
    /// schema's size to that power.
    pub max_fan_out: usize,
    /// `__schema` fields in one document (aliases and fragments expanded): one answers
    /// everything, so more only multiply the work.
    pub max_schemas: usize,
}

pub const INTROSPECTION_LIMITS: IntrospectionLimits = IntrospectionLimits {
    max_depth: 20,
    max_fan_out: 3,
    max_schemas: 1,
};

/// The limits the guard applies, from [`ApiLimits`].
#[derive(Clone, Debug)]
pub struct DocumentLimits {
    pub max_bytes: usize,
    pub max_tokens: usize,
    pub max_nesting: usize,
    pub max_depth: usize,
    pub max_selections: usize,
    pub max_directives: usize,
    pub introspection: IntrospectionLimits,
}

impl DocumentLimits {
    pub fn from_api_limits(limits: &ApiLimits) -> Self {
        DocumentLimits {
            max_bytes: limits.max_query_bytes,
            max_tokens: limits.max_query_tokens,
            max_nesting: MAX_NESTING,
            max_depth: limits.max_query_depth,
            max_selections: limits.max_query_complexity,
            max_directives: limits.max_directives,
            introspection: INTROSPECTION_LIMITS,
        }
    }
}

/// Deepest bracket nesting (`{`, `[`, `(` together) in a document's text. It bounds the
/// parser's recursion; no query of ours nests brackets half as deep.
pub const MAX_NESTING: usize = 64;

/// Why a document was refused: a stable code and a message naming the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: String) -> Self {
        Refusal { code, message }
    }

    fn into_server_error(self) -> ServerError {
        let mut error = ServerError::new(self.message, None);
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", self.code);
        error.extensions = Some(extensions);
        error
    }
}

/// Checks a document's text, then (when it parses) its shape. A document that does not parse
/// passes: async-graphql reports the syntax error, having parsed it again.
pub fn check_request(request: &mut Request, limits: &DocumentLimits) -> Result<(), Refusal> {
    check_text(&request.query, limits)?;
    match request.parsed_query() {
        Ok(document) => check_document(document, limits),
        Err(_) => Ok(()),
    }
}

/// Size, tokens and bracket nesting of the text, in one pass.
pub fn check_text(text: &str, limits: &DocumentLimits) -> Result<(), Refusal> {
    if text.len() > limits.max_bytes {
        return Err(Refusal::new(
            "QUERY_TOO_LARGE",
            format!(
                "the query is {} bytes long (the maximum is {})",
                text.len(),
                limits.max_bytes
            ),
        ));
    }
    let mut tokens = 0usize;
    let mut nesting = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' => {
                tokens += 1;
                i = skip_string(bytes, i);
            }
            b'{' | b'[' | b'(' => {
                tokens += 1;
                nesting += 1;
                if nesting > limits.max_nesting {
                    return Err(Refusal::new(
                        "QUERY_TOO_DEEP",
                        format!(
                            "the query nests brackets more than {} deep",
                            limits.max_nesting
                        ),
                    ));
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                tokens += 1;
                nesting = nesting.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                tokens += 1;
                i += 3;
            }
            c if c == b'_' || c == b'-' || c.is_ascii_alphanumeric() => {
                tokens += 1;
                while i < bytes.len()
                    && (bytes[i] == b'_'
                        || bytes[i] == b'.'
                        || bytes[i] == b'+'
                        || bytes[i] == b'-'
                        || bytes[i].is_ascii_alphanumeric())
                {
                    i += 1;
                }
            }
            _ => {
                // Punctuators (`! $ & : = @ |`), a byte-order mark, or anything the parser will
                // refuse: one token each.
                tokens += 1;
                i += utf8_len(bytes[i]);
            }
        }
        if tokens > limits.max_tokens {
            return Err(Refusal::new(
                "QUERY_TOO_LARGE",
                format!(
                    "the query has more than {} tokens (names, values and punctuation)",
                    limits.max_tokens
                ),
            ));
        }
    }
    Ok(())
}

/// The index after the string starting at `start` (a `"`): a block string `"""..."""` or a
/// plain one with `\` escapes. An unterminated string runs to the end.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    if bytes[start..].starts_with(b"\"\"\"") {
        let mut i = start + 3;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"\\\"\"\"") {
                i += 4;
            } else if bytes[i..].starts_with(b"\"\"\"") {
                return i + 3;
            } else {
                i += 1;
            }
        }
        return bytes.len();
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'\n' | b'\r' => return i, // The parser refuses it; the line goes on as tokens.
            _ => i += 1,
        }
    }
    bytes.len()
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Whether a selection set is walked as part of introspection (inside `__schema` or `__type`),
/// which has limits of its own.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
enum Mode {
    Data,
    Introspection,
}

/// What a selection set costs, over every path through it with fragments expanded.
#[derive(Copy, Clone, Default, Debug)]
struct Cost {
    /// Selections (fields, fragment spreads, inline fragments) it expands to.
    selections: u64,
    /// Deepest nesting of data fields below it.
    depth: usize,
    /// Deepest nesting of introspection fields below it.
    introspection_depth: usize,
    /// Most schema-wide introspection lists on one path below it.
    fan_out: usize,
    /// `__schema` fields it expands to.
    schemas: u64,
}

impl Cost {
    fn widen(&mut self, other: Cost) {
        self.selections = self.selections.saturating_add(other.selections);
        self.depth = self.depth.max(other.depth);
        self.introspection_depth = self.introspection_depth.max(other.introspection_depth);
        self.fan_out = self.fan_out.max(other.fan_out);
        self.schemas = self.schemas.saturating_add(other.schemas);
    }
}

const FAN_OUT_FIELDS: [&str; 8] = [
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
];

struct Walker<'a> {
    document: &'a ExecutableDocument,
    limits: &'a DocumentLimits,
    /// Each fragment's cost in each mode, once known.
    done: HashMap<(&'a str, Mode), Cost>,
    /// Fragments being walked now: meeting one again is a cycle.
    walking: Vec<&'a str>,
}

impl<'a> Walker<'a> {
    fn selection_set(
        &mut self,
        set: &'a Positioned<SelectionSet>,
        mode: Mode,
    ) -> Result<Cost, Refusal> {
        let mut cost = Cost::default();
        for item in &set.node.items {
            cost.selections = cost.selections.saturating_add(1);
            let below = match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let field_mode = if name == "__schema" || name == "__type" {
                        Mode::Introspection
                    } else {
                        mode
                    };
                    let mut below = self.selection_set(&field.node.selection_set, field_mode)?;
                    if name == "__schema" {
                        below.schemas = below.schemas.saturating_add(1);
                    }
                    match field_mode {
                        Mode::Data => below.depth += 1,
                        Mode::Introspection => {
                            below.introspection_depth += 1;
                            if mode == Mode::Introspection && FAN_OUT_FIELDS.contains(&name) {
                                below.fan_out += 1;
                            }
                        }
                    }
                    below
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set, mode)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), mode)?
                }
            };
            cost.widen(below);
            self.check(&cost)?;
        }
        Ok(cost)
    }

    fn fragment(&mut self, name: &'a str, mode: Mode) -> Result<Cost, Refusal> {
        if let Some(cost) = self.done.get(&(name, mode)) {
            return Ok(*cost);
        }
        let Some((key, definition)) = self.document.fragments.get_key_value(name) else {
            return Ok(Cost::default()); // Unknown fragments are a validation error.
        };
        if self.walking.contains(&name) {
            return Err(Refusal::new(
                "GRAPHQL_VALIDATION_FAILED",
                format!("fragment \"{name}\" spreads itself"),
            ));
        }
        self.walking.push(key.as_str());
        let cost = self.selection_set(&definition.node.selection_set, mode)?;
        self.walking.pop();
        self.done.insert((key.as_str(), mode), cost);
        Ok(cost)
    }

    fn check(&self, cost: &Cost) -> Result<(), Refusal> {
        let limits = self.limits;
        if cost.selections > limits.max_selections as u64 {
            return Err(Refusal::new(
                "QUERY_TOO_COMPLEX",
                format!(
                    "the query expands to more than {} fields and fragments (the maximum complexity is {})",
                    limits.max_selections, limits.max_selections
                ),
            ));
        }
        if cost.depth > limits.max_depth {
            return Err(Refusal::new(
                "QUERY_TOO_DEEP",
                format!(
                    "the query is nested too deep (the maximum depth is {})",
                    limits.max_depth
                ),
            ));
        }
        if cost.schemas > limits.introspection.max_schemas as u64 {
            return Err(Refusal::new(
                "QUERY_TOO_COMPLEX",
                format!(
                    "the query asks for __schema more than {} time(s); the whole schema comes in one",
                    limits.introspection.max_schemas
                ),
            ));
        }
        if cost.introspection_depth > limits.introspection.max_depth
            || cost.fan_out > limits.introspection.max_fan_out
        {
            return Err(Refusal::new(
                "QUERY_TOO_DEEP",
                format!(
                    "the introspection query is nested too deep (at most {} fields deep, with at most {} of types, fields, args, inputFields, interfaces, possibleTypes, enumValues and directives on one path)",
                    limits.introspection.max_depth, limits.introspection.max_fan_out
                ),
            ));
        }
        Ok(())
    }
}

/// The document's shape, each fragment walked once per mode.
pub fn check_document(
    document: &ExecutableDocument,
    limits: &DocumentLimits,
) -> Result<(), Refusal> {
    check_directives(document, limits.max_directives)?;
    let mut walker = Walker {
        document,
        limits,
        done: HashMap::new(),
        walking: Vec::new(),
    };
    let mut total = Cost::default();
    for (_, operation) in document.operations.iter() {
        let cost = walker.selection_set(&operation.node.selection_set, Mode::Data)?;
        total.widen(cost);
        walker.check(&total)?;
    }
    // Fragments no operation uses are still validated, so they count too.
    for (name, _) in document.fragments.iter() {
        if !walker.done.contains_key(&(name.as_str(), Mode::Data))
            && !walker
                .done
                .contains_key(&(name.as_str(), Mode::Introspection))
        {
            let cost = walker.fragment(name.as_str(), Mode::Data)?;
            total.widen(cost);
            walker.check(&total)?;
        }
    }
    Ok(())
}

/// Directives per field, each field of the document looked at once (they do not depend on
/// where a fragment is spread).
fn check_directives(document: &ExecutableDocument, max: usize) -> Result<(), Refusal> {
    fn walk(set: &Positioned<SelectionSet>, max: usize) -> Result<(), Refusal> {
        for item in &set.node.items {
            if item.node.directives().len() > max {
                return Err(Refusal::new(
                    "TOO_MANY_DIRECTIVES",
                    format!("a selection has more than {max} directives (at most {max} per field)"),
                ));
            }
            match &item.node {
                Selection::Field(field) => walk(&field.node.selection_set, max)?,
                Selection::InlineFragment(fragment) => walk(&fragment.node.selection_set, max)?,
                Selection::FragmentSpread(_) => {}
            }
        }
        Ok(())
    }
    for (_, operation) in document.operations.iter() {
        walk(&operation.node.selection_set, max)?;
    }
    for (_, fragment) in document.fragments.iter() {
        walk(&fragment.node.selection_set, max)?;
    }
    Ok(())
}

/// The guard as a schema extension, so it runs on HTTP and WebSocket requests alike.
pub struct DocumentGuard(pub Arc<DocumentLimits>);

impl ExtensionFactory for DocumentGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentGuardExtension(self.0.clone()))
    }
}

struct DocumentGuardExtension(Arc<DocumentLimits>);

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentGuardExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        check_request(&mut request, &self.0).map_err(Refusal::into_server_error)?;
        next.run(ctx, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DocumentLimits {
        DocumentLimits {
            max_bytes: 64 * 1024,
            max_tokens: 5_000,
            max_nesting: MAX_NESTING,
            max_depth: 12,
            max_selections: 2_500,
            max_directives: 4,
            introspection: INTROSPECTION_LIMITS,
        }
    }

    fn check(query: &str) -> Result<(), Refusal> {
        let mut request = Request::new(query);
        check_request(&mut request, &limits())
    }

    fn fan_out(levels: usize) -> String {
        let mut query = String::from("query { ...F0 }\n");
        for i in 0..levels {
            query.push_str(&format!(
                "fragment F{i} on Query {{ ...F{next} ...F{next} }}\n",
                next = i + 1
            ));
        }
        query.push_str(&format!("fragment F{levels} on Query {{ __typename }}\n"));
        query
    }

    #[test]
    fn a_fragment_fan_out_is_refused_as_too_complex_without_expanding_it() {
        let started = std::time::Instant::now();
        let refusal = check(&fan_out(40)).unwrap_err();
        assert_eq!(refusal.code, "QUERY_TOO_COMPLEX");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert!(
            check(&fan_out(8)).is_ok(),
            "2^8 selections are within the limit"
        );
    }

    #[test]
    fn fragment_cycles_are_refused() {
        let refusal =
            check("query { ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A }")
                .unwrap_err();
        assert_eq!(refusal.code, "GRAPHQL_VALIDATION_FAILED");
        assert!(refusal.message.contains("spreads itself"), "{refusal:?}");
    }

    #[test]
    fn depth_counts_fields_through_fragments() {
        let nested = |levels: usize| {
            format!(
                "query {{ ...D }} fragment D on Query {{ {}__typename{} }}",
                "a { ".repeat(levels),
                " }".repeat(levels)
            )
        };
        assert!(check(&nested(11)).is_ok());
        assert_eq!(check(&nested(12)).unwrap_err().code, "QUERY_TOO_DEEP");
    }

    #[test]
    fn brackets_nested_past_the_limit_are_refused_before_parsing() {
        let query = format!("query {{ a(x: {}1{}) }}", "[".repeat(100), "]".repeat(100));
        assert_eq!(check(&query).unwrap_err().code, "QUERY_TOO_DEEP");
        let braces = "{".repeat(50_000);
        assert_eq!(check(&braces).unwrap_err().code, "QUERY_TOO_DEEP");
    }

    #[test]
    fn tokens_and_bytes_are_bounded() {
        let many = format!("{{ {} }}", "a ".repeat(6_000));
        assert_eq!(check(&many).unwrap_err().code, "QUERY_TOO_LARGE");
        let long = format!("{{ a(s: \"{}\") }}", "x".repeat(70 * 1024));
        assert_eq!(check(&long).unwrap_err().code, "QUERY_TOO_LARGE");
        // A long string is one token, and `#` comments are none.
        let string = format!(
            "{{ a(s: \"{}\") }} # {}",
            "x \\\" ".repeat(5_000),
            "y ".repeat(5_000)
        );
        assert!(check(&string).is_ok());
    }

    #[test]
    fn too_many_directives_on_one_field_are_refused() {
        let query = "{ __typename @a @b @c @d @e }";
        assert_eq!(check(query).unwrap_err().code, "TOO_MANY_DIRECTIVES");
        assert!(check("{ __typename @a @b @c @d }").is_ok());
    }

    #[test]
    fn circular_introspection_is_refused_and_the_standard_shape_passes() {
        let circular = |levels: usize| {
            format!(
                "{{ __schema {{ types {{ {}name{} }} }} }}",
                "fields { type { ".repeat(levels),
                " } }".repeat(levels)
            )
        };
        assert!(check(&circular(1)).is_ok());
        for levels in [3, 10, 20, 40] {
            let refusal = check(&circular(levels)).unwrap_err();
            assert_eq!(refusal.code, "QUERY_TOO_DEEP", "{levels} levels");
        }
        let type_ref = format!(
            "{{ __schema {{ types {{ fields {{ args {{ type {{ {}name{} }} }} }} }} }} }}",
            "ofType { ".repeat(8),
            " }".repeat(8)
        );
        assert!(
            check(&type_ref).is_ok(),
            "deeper than 12, as the stock query"
        );
        let twice = "{ a: __schema { queryType { name } } ...S } fragment S on Query { __schema { queryType { name } } }";
        assert_eq!(check(twice).unwrap_err().code, "QUERY_TOO_COMPLEX");
    }
}
