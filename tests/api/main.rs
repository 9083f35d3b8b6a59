//! Integration tests: oms against a real PostgreSQL and a real Kafka-protocol broker, driven
//! through its public GraphQL API over HTTP and WebSocket.

mod authorization;
mod authorization_matrix;
mod batches;
mod cold_start;
mod concurrency;
mod connections;
mod dashboard;
mod database_tls;
mod dead_letters;
mod delivery;
mod faults;
mod fuzz;
mod harness;
mod helpers;
mod hostile_documents;
mod http;
mod idempotency;
mod identity_provider;
mod inbox;
mod introspection;
mod kafka_sasl;
mod kafka_tls;
mod limits;
mod live_catch_up;
mod order_flow;
mod pooler;
mod properties;
mod proxy;
mod schema;
mod stale_changes;
mod subscriptions;
mod traces;
mod validation;
