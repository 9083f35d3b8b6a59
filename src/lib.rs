//! # oms — order management on PostgreSQL and Kafka, with a GraphQL API and live subscriptions
//!
//! ```text
//! client ──POST /graphql── placeOrder ──► one Postgres transaction:
//!                                          orders + order_lines + history + outbox rows
//! outbox relay (one active at a time) ──► Kafka `inventory` (key = order id)
//!                                            │
//!                  inventory consumer ◄──────┘  one transaction: lock the order, lock stock
//!                                               rows by id, deduct or reject, history, inbox
//!                                               mark, outbox(status event); then the offset
//! client ── updateOrderStatus ──► outbox ──► Kafka `orders` ──► orders consumer
//!                                               lock order, check the transition, apply,
//!                                               restore stock once on cancel, outbox(status)
//! relay ──► Kafka `order-status` ──► every instance ──► tokio broadcast ──► subscriptions
//! ```
//!
//! Modules, in the order a request meets them: [`http`] → [`graphql`] → [`service`] → [`db`];
//! [`outbox`] → [`kafka`] → [`consumers`] → [`service`]; [`live`] → [`graphql::subscription`].
//! The rules themselves (status machine, validation, events) live in [`domain`].

pub mod app;
pub mod auth;
pub mod config;
pub mod consumers;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod kafka;
pub mod live;
pub mod metrics;
pub mod outbox;
pub mod seed;
pub mod service;
pub mod telemetry;
