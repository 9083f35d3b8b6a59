//! Logging: a tracing subscriber with an env filter, as text or JSON lines.

use crate::config::TelemetryArgs;
use tracing_subscriber::EnvFilter;

pub fn init(args: &TelemetryArgs) {
    let filter = EnvFilter::try_new(&args.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
