//! Gives the schema's own errors (parse and validation: a query too deep or too complex, an
//! unknown field) a stable `extensions.code`, naming the limit that was hit, on every transport.

use crate::config::ApiLimits;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};
use std::sync::Arc;

pub struct ErrorCodes(pub ApiLimits);

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension(self.0.clone()))
    }
}

struct ErrorCodesExtension(ApiLimits);

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
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
                label_validation_error(error, &self.0);
            }
            errors
        })
    }
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
