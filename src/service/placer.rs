//! Orders placed together: the placements that arrive while earlier ones are being written go
//! into the database in one statement, one round trip and one commit, instead of one each
//! ([`super::batched`]). A batch that fails (a used idempotency key, an unknown or retired SKU,
//! a total out of range: any one order's fault) is retried in halves, down to single orders, so
//! each order gets its own answer and one bad order never fails its neighbours.

use super::batched::{BatchMetrics, BatchWrite, Batched};
use crate::db;
use crate::db::orders::{OrderRow, Placement};
use crate::db::Db;
use crate::metrics::Metrics;
use std::collections::HashMap;
use uuid::Uuid;

/// Places orders, in batches when they arrive faster than one statement commits.
pub type Placer = Batched<PlaceOrders>;

/// Placing orders in one statement ([`db::orders::insert_placed`]).
pub struct PlaceOrders(pub Db);

impl BatchWrite for PlaceOrders {
    type Item = Placement;
    /// Each order as stored. The statement has committed once it answers, so an order missing
    /// from its answer is that order's error alone, never a failed batch to place again.
    type Written = sqlx::Result<OrderRow>;

    async fn write(&self, placements: &[&Placement]) -> sqlx::Result<Vec<Self::Written>> {
        let stored = db::orders::insert_placed(&self.0, placements).await?;
        let mut by_id: HashMap<Uuid, OrderRow> =
            stored.into_iter().map(|order| (order.id, order)).collect();
        Ok(placements
            .iter()
            .map(|placement| {
                by_id
                    .remove(&placement.order.id)
                    .ok_or(sqlx::Error::RowNotFound)
            })
            .collect())
    }
}

impl Placer {
    /// A placer writing up to `batch_max` orders per statement (1: each order alone) with up to
    /// `writers` statements at once.
    pub fn start_placing(db: Db, batch_max: u16, writers: u16, metrics: &Metrics) -> Placer {
        Batched::start(
            PlaceOrders(db),
            batch_max,
            writers,
            BatchMetrics {
                items_per_statement: metrics.place_batch_orders.clone(),
                waiting: metrics.placements_waiting.clone(),
            },
        )
    }

    /// Places one order: the order as stored, or the statement's error as if it were placed
    /// alone (see [`db::orders::insert_placed`]).
    pub async fn place(&self, placement: Placement) -> sqlx::Result<OrderRow> {
        self.write(placement).await?
    }
}
