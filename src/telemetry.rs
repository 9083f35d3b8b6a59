//! Logging (a tracing subscriber with an env filter, as text or JSON lines) and, when an OTLP
//! endpoint is configured, OpenTelemetry traces.
//!
//! Traces are configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns them on; `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`http/protobuf`, the default, or `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_BSP_*` are honoured;
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn them off. The spans `RUST_LOG`
//! enables are exported, so one order can be followed from its HTTP request
//! through the outbox, Kafka and the consumers to the push to subscribers: the W3C
//! `traceparent` of the span that wrote an event travels in its outbox row and its Kafka
//! message's headers.

use crate::config::TelemetryArgs;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The W3C trace-context header, in HTTP requests and Kafka messages.
pub const TRACEPARENT: &str = "traceparent";

/// Flushes the traces still buffered when dropped through [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The exporter blocks its thread while it flushes.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(error)) = flushed {
                eprintln!("warning: flushing traces failed: {error}");
            }
        }
    }
}

/// Installs logging, and tracing when configured. Call inside the Tokio runtime.
///
/// One filter, `RUST_LOG`, decides for both: the spans it enables are the spans exported (the
/// default, `info,oms=info`, enables all of oms's). Filtering each output on its own (per-layer
/// filters) made tracing-subscriber 0.3.23 drop log lines: an event a library only asked about
/// (`enabled!`, as sqlx does for PostgreSQL notices) left the filter's state set, and the next
/// event was lost (seen with `RUST_LOG=warn,oms=info`).
pub fn init(args: &TelemetryArgs) -> Telemetry {
    let filter = EnvFilter::try_new(&args.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if args.log_json {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    let (provider, failure) = match traces_configured().then(tracer_provider) {
        None => (None, None),
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(error)) => (None, Some(error)),
    };
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("oms")));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .init();
    if let Some(error) = failure {
        tracing::warn!(error = %format!("{error:#}"), "traces are off: the OTLP exporter could not be set up");
    } else if provider.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    Telemetry { provider }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| !value.trim().is_empty())
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|set| set.trim().eq_ignore_ascii_case(value))
}

fn traces_configured() -> bool {
    (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !env_is("OTEL_SDK_DISABLED", "true")
        && !env_is("OTEL_TRACES_EXPORTER", "none")
}

fn tracer_provider() -> anyhow::Result<SdkTracerProvider> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let http = OtlpHttpClient {
        client,
        runtime: tokio::runtime::Handle::current(),
    };
    let mut exporter = SpanExporter::builder().with_http().with_http_client(http);
    // With both encodings built in, the crate would default to JSON; the specification's
    // default is protobuf.
    if !env_set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") && !env_set("OTEL_EXPORTER_OTLP_PROTOCOL") {
        exporter = exporter.with_protocol(Protocol::HttpBinary);
    }
    // The resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself.
    let mut resource = Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("oms");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter.build()?)
        .with_resource(resource.build())
        .build())
}

/// The OTLP exporter's HTTP client: the service's own reqwest, run on the Tokio runtime (the
/// batch exporter calls it from a thread of its own).
#[derive(Debug, Clone)]
struct OtlpHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (client, request) = (self.client.clone(), reqwest::Request::try_from(request)?);
        self.runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let (status, headers) = (response.status(), response.headers().clone());
                let mut out = Response::builder()
                    .status(status)
                    .body(response.bytes().await?)?;
                *out.headers_mut() = headers;
                Ok::<_, HttpError>(out)
            })
            .await?
    }
}

/// The W3C `traceparent` of the current span, when traces are on.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` (not yet entered) a child of the remote span `traceparent` names.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Fails only when traces are off or the span is filtered out: nothing to continue.
        let _ = span.set_parent(parent);
    }
}
