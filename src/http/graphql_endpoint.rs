//! The GraphQL endpoint over HTTP (`/graphql`, GET and POST): who is asking, their rate limit,
//! persisted queries, the document's text limits, the GET rules and introspection, then the
//! schema; every refusal in GraphQL's error shape with a stable code.

use super::access_log::GraphqlRequest;
use super::{graphql_error, HttpState, MAX_BODY_BYTES, REQUEST_ID};
use crate::error::AppError;
use crate::graphql::rate_limit::Caller;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn graphql(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
) -> Response {
    let mut seen = GraphqlRequest {
        user: "anonymous".to_owned(),
        ..Default::default()
    };
    let mut response = answer(&state, peer, &method, &headers, request, &mut seen).await;
    if !response.status().is_success() {
        seen.errors = seen.errors.max(1);
    }
    response.extensions_mut().insert(seen);
    response
}

/// The answer to one GraphQL request over HTTP; `seen` gathers what the access log says of it.
async fn answer(
    state: &HttpState,
    peer: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
    seen: &mut GraphqlRequest,
) -> Response {
    let request = match request {
        Ok(request) => request,
        Err(rejection) if matches!(rejection.0, async_graphql::ParseRequestError::PayloadTooLarge) => {
            return graphql_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                AppError::BadUserInput(format!("the request body is larger than {MAX_BODY_BYTES} bytes")),
            );
        }
        // The library's own rejection text names its internals; say what is expected instead.
        Err(_) => return graphql_error(
            StatusCode::BAD_REQUEST,
            AppError::BadUserInput(
                "the request must be JSON {\"query\": string, \"variables\": object, \"operationName\": string} (or the same as GET parameters); batches are not accepted".into(),
            ),
        ),
    };
    let mut request = request.into_inner();
    let mut viewer = None;
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let verified = match value.to_str() {
            Ok(value) => state.authenticator.verify_authorization(value).await,
            Err(_) => Err(crate::auth::AuthError::MalformedHeader),
        };
        match verified {
            Ok(verified) => {
                seen.user = verified.user_id.clone();
                viewer = Some(verified);
            }
            Err(error) => {
                return graphql_error(
                    StatusCode::UNAUTHORIZED,
                    AppError::Unauthenticated(error.to_string()),
                )
            }
        }
    }
    let caller = match &viewer {
        Some(viewer) => Caller::User(&viewer.user_id),
        None => Caller::Anonymous(state.client_ip(peer, headers)),
    };
    if let Err(retry_after) = state.requests.check(caller) {
        return rate_limited(retry_after);
    }
    if let Some(viewer) = viewer {
        request = request.data(viewer);
    }
    // A persisted query's document, before anything looks at it.
    if let Err(refusal) = state.persisted_queries.resolve(&mut request) {
        seen.errors = 1;
        return refused(&refusal.message, refusal.code);
    }
    // The text's size, tokens and nesting before anything here parses it (the schema's guard
    // checks the rest).
    if let Err(refusal) = crate::graphql::guard::check_text(&request.query, &state.document_limits)
    {
        seen.errors = 1;
        return refused(&refusal.message, refusal.code);
    }
    state.parsed_documents.parse(&mut request);
    (seen.operation, seen.kind) = operation_of(&mut request);
    if let Some(operation) = &seen.operation {
        tracing::Span::current().record("operation", operation.as_str());
    }
    if method == Method::GET && changes_state(&mut request) {
        return graphql_error(
            StatusCode::METHOD_NOT_ALLOWED,
            AppError::BadUserInput(
                "mutations and subscriptions need POST (or the WebSocket)".into(),
            ),
        );
    }
    if !state.limits.introspection && asks_for_introspection(&mut request) {
        seen.errors = 1;
        return refused(
            "introspection is disabled on this server",
            "INTROSPECTION_DISABLED",
        );
    }
    let mut response = state.schema.execute(request).await;
    seen.errors = response.errors.len();
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    label_errors(&mut response.errors, request_id);
    GraphQLResponse::from(response).into_response()
}

/// A request refused before execution: HTTP 200 with one error and its code, as GraphQL
/// clients read a failed operation.
fn refused(message: &str, code: &str) -> Response {
    let body = serde_json::json!({ "errors": [{
        "message": message, "extensions": { "code": code }
    }]});
    (StatusCode::OK, Json(body)).into_response()
}

/// HTTP 429 with `Retry-After`, and the same `RATE_LIMITED` error a WebSocket operation gets.
fn rate_limited(retry_after: Duration) -> Response {
    let error = AppError::RateLimited {
        what: "requests",
        retry_after,
    };
    let body = serde_json::json!({ "errors": [{
        "message": error.to_string(),
        "extensions": { "code": error.code(), "retryAfterMs": retry_after.as_millis() as u64 }
    }]});
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.to_string())],
        Json(body),
    )
        .into_response()
}

/// Every error leaves with a stable code (the schema labels its own; anything else is a failed
/// validation), and errors worth reporting carry the request id that is in the logs.
fn label_errors(errors: &mut [async_graphql::ServerError], request_id: &str) {
    for error in errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        let code = match extensions.get("code") {
            Some(code) => code.to_string().trim_matches('"').to_owned(),
            None => {
                extensions.set("code", "GRAPHQL_VALIDATION_FAILED");
                "GRAPHQL_VALIDATION_FAILED".to_owned()
            }
        };
        if matches!(code.as_str(), "INTERNAL" | "UNAVAILABLE") && !request_id.is_empty() {
            extensions.set("requestId", request_id);
        }
    }
}

/// The name and kind of the operation a request runs (the named one, or the only one).
fn operation_of(request: &mut async_graphql::Request) -> (Option<String>, &'static str) {
    use async_graphql::parser::types::OperationType;
    let wanted = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return (wanted, "");
    };
    let selected = document
        .operations
        .iter()
        .find(|(name, _)| wanted.is_none() || name.map(|n| n.as_str()) == wanted.as_deref());
    match selected {
        Some((name, operation)) => (
            name.map(|name| name.to_string()),
            match operation.node.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            },
        ),
        None => (wanted, ""),
    }
}

/// Whether the operation a request would run is not a query (GraphQL over HTTP: GET must not
/// change anything).
fn changes_state(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::OperationType;
    let wanted = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false; // The schema reports the syntax error.
    };
    document.operations.iter().any(|(name, operation)| {
        let selected = wanted.is_none() || name.map(|n| n.as_str()) == wanted.as_deref();
        selected && operation.node.ty != OperationType::Query
    })
}

/// Whether a request selects `__schema` or `__type` at its top level.
fn asks_for_introspection(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::Selection;
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    document.operations.iter().any(|(_, operation)| {
        operation.node.selection_set.node.items.iter().any(|item| {
            matches!(&item.node, Selection::Field(field)
                if matches!(field.node.name.node.as_str(), "__schema" | "__type"))
        })
    })
}
