//! The GraphiQL playground at `/`, with everything it loads served from here: GraphiQL, React
//! and graphql-ws from the npm registry (versions pinned by `web-playground/package-lock.json`,
//! installed by `build.rs`) are embedded in the binary. The page works without access to any
//! other host and under a strict Content-Security-Policy.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use std::sync::Arc;

const PAGE: &str = include_str!("../../web-playground/index.html");
const SCRIPT: &str = include_str!("../../web-playground/playground.js");

macro_rules! asset {
    ($file:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/web-playground/node_modules/",
            $file
        ))
    };
}

/// Name (as the page asks for it), content type, bytes. The versions are in the names, so each
/// may be cached for good.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql-3.8.3.min.css",
        "text/css; charset=utf-8",
        asset!("graphiql/graphiql.min.css"),
    ),
    (
        "graphiql-3.8.3.min.js",
        "text/javascript; charset=utf-8",
        asset!("graphiql/graphiql.min.js"),
    ),
    (
        "react-18.3.1.production.min.js",
        "text/javascript; charset=utf-8",
        asset!("react/umd/react.production.min.js"),
    ),
    (
        "react-dom-18.3.1.production.min.js",
        "text/javascript; charset=utf-8",
        asset!("react-dom/umd/react-dom.production.min.js"),
    ),
    (
        "graphql-ws-5.16.0.min.js",
        "text/javascript; charset=utf-8",
        asset!("graphql-ws/umd/graphql-ws.min.js"),
    ),
];

/// Only this origin's scripts, styles, fonts and connections (GraphiQL sets inline styles and
/// embeds its fonts and icons as data: URLs).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn page(State(state): State<Arc<HttpState>>) -> Response {
    let page = PAGE.replace(
        "__OMS_DEFAULT_HEADERS__",
        &html_attribute(&state.playground_headers),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// The page's own script (it reads the default headers from the page).
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `text` safe inside a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
