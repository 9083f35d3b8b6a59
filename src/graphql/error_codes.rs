//! Gives the schema's own errors (parse and validation: a query too deep or too complex, an
//! unknown field) a stable `extensions.code`, naming the limit that was hit, on every transport.
//!
//! With introspection off, these messages name nothing the request did not name itself: a
//! scanner that sends guesses (clairvoyance) would otherwise rebuild the schema from "Unknown
//! field "orderz" on type "Query"" and the types named in argument errors. The schema is also
//! built without suggestions ("Did you mean ...") then.

use crate::config::ApiLimits;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Variables};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

pub struct ErrorCodes(pub ApiLimits);

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension {
            limits: self.0.clone(),
            query: OnceLock::new(),
        })
    }
}

/// One per request.
struct ErrorCodesExtension {
    limits: ApiLimits,
    /// The request's text, kept only while introspection is off, to tell which names it sent.
    query: OnceLock<String>,
}

impl ErrorCodesExtension {
    /// With introspection off, replaces every name in the messages that the request did not send.
    fn hide_unsent_names(&self, errors: &mut [ServerError]) {
        if self.limits.introspection {
            return;
        }
        let Some(query) = self.query.get() else {
            return;
        };
        let sent = names_in(query);
        for error in errors {
            error.message = redact_unsent_names(&error.message, query, &sent);
        }
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if !self.limits.introspection {
            let _ = self.query.set(query.to_owned());
        }
        next.run(ctx, query, variables).await.map_err(|mut error| {
            set_code(&mut error, "GRAPHQL_PARSE_FAILED");
            error
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|mut errors| {
            for error in &mut errors {
                label_validation_error(error, &self.limits);
            }
            self.hide_unsent_names(&mut errors);
            errors
        })
    }

    /// Arguments and variables are coerced while the operation runs, and their errors name the
    /// input types they expected.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        self.hide_unsent_names(&mut response.errors);
        response
    }
}

/// The GraphQL names (identifiers) in a document's text.
fn names_in(text: &str) -> HashSet<&str> {
    text.split(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .filter(|word| !word.is_empty())
        .collect()
}

/// Replaces each quoted part of `message` (`"..."` or `` `...` ``) that the request did not send:
/// a name not among its names, or other text not found in it.
fn redact_unsent_names(message: &str, query: &str, sent: &HashSet<&str>) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().expect("found above");
        let Some(len) = rest[start + 1..].find(quote) else {
            break;
        };
        let quoted = &rest[start + 1..start + 1 + len];
        let is_name = !quoted.is_empty()
            && quoted
                .chars()
                .all(|c| c == '_' || c.is_ascii_alphanumeric());
        let was_sent = if is_name {
            sent.contains(quoted)
        } else {
            query.contains(quoted)
        };
        out.push_str(&rest[..=start]);
        out.push_str(if was_sent { quoted } else { "…" });
        out.push(quote);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn set_code(error: &mut ServerError, code: &str) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}

fn label_validation_error(error: &mut ServerError, limits: &ApiLimits) {
    let (code, limit) = if error.message.contains("nested too deep") {
        (
            "QUERY_TOO_DEEP",
            Some(format!("the maximum depth is {}", limits.max_query_depth)),
        )
    } else if error.message.contains("too complex") {
        (
            "QUERY_TOO_COMPLEX",
            Some(format!(
                "the maximum complexity is {}",
                limits.max_query_complexity
            )),
        )
    } else if error.message.contains("directives") {
        (
            "TOO_MANY_DIRECTIVES",
            Some(format!("at most {} per field", limits.max_directives)),
        )
    } else {
        ("GRAPHQL_VALIDATION_FAILED", None)
    };
    if let Some(limit) = limit {
        error.message = format!("{} ({limit})", error.message.trim_end_matches('.'));
    }
    set_code(error, code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_request_sent_stay_in_a_message() {
        let query = "{ orderz(first: 1) { id } }";
        let sent = names_in(query);
        assert_eq!(
            redact_unsent_names(
                "Unknown field \"orderz\" on type \"Query\". Did you mean \"order\"?",
                query,
                &sent
            ),
            "Unknown field \"orderz\" on type \"…\". Did you mean \"…\"?"
        );
        assert_eq!(
            redact_unsent_names("unknown `id` of `Order` and an \"unclosed", query, &sent),
            "unknown `id` of `…` and an \"unclosed"
        );
    }
}
