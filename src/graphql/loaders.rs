//! What each loader reads, by key: nested fields of a list (an order's lines, a line's item, an
//! order's history) in one query per field instead of one per parent, and single orders (alone,
//! or with their lines), items and customers. `coalescing.rs` decides when a statement runs and
//! which keys it takes.

use crate::db;
use crate::db::customers::CustomerRow;
use crate::db::inventory::InventoryItemRow;
use crate::db::orders::{OrderLineRow, OrderRow, StatusChangeRow};
use crate::db::Db;
use async_graphql::dataloader::Loader;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub struct ItemBySku(pub Db);
pub struct LinesByOrder(pub Db);
pub struct HistoryByOrder(pub Db);
pub struct OrderById(pub Db);
pub struct OrderWithLinesById(pub Db);
pub struct CustomerById(pub Db);

impl Loader<String> for ItemBySku {
    type Value = InventoryItemRow;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, skus: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        Ok(db::inventory::find_by_skus(&self.0, skus)
            .await?
            .into_iter()
            .map(|item| (item.sku.clone(), item))
            .collect())
    }
}

impl Loader<Uuid> for LinesByOrder {
    type Value = Vec<OrderLineRow>;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let mut by_order: HashMap<Uuid, Vec<OrderLineRow>> = HashMap::new();
        for line in db::orders::lines_of(&self.0, ids).await? {
            by_order.entry(line.order_id).or_default().push(line);
        }
        Ok(by_order)
    }
}

impl Loader<Uuid> for HistoryByOrder {
    type Value = Vec<StatusChangeRow>;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let mut by_order: HashMap<Uuid, Vec<StatusChangeRow>> = HashMap::new();
        for change in db::orders::history_of(&self.0, ids).await? {
            by_order.entry(change.order_id).or_default().push(change);
        }
        Ok(by_order)
    }
}

impl Loader<Uuid> for OrderById {
    type Value = OrderRow;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(db::orders::find_many(&self.0, ids)
            .await?
            .into_iter()
            .map(|order| (order.id, order))
            .collect())
    }
}

impl Loader<Uuid> for OrderWithLinesById {
    type Value = (OrderRow, Vec<OrderLineRow>);
    type Error = Arc<sqlx::Error>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(db::orders::find_many_with_lines(&self.0, ids)
            .await?
            .into_iter()
            .map(|(order, lines)| (order.id, (order, lines)))
            .collect())
    }
}

impl Loader<String> for CustomerById {
    type Value = CustomerRow;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, ids: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        Ok(db::customers::find_many(&self.0, ids)
            .await?
            .into_iter()
            .map(|customer| (customer.id.clone(), customer))
            .collect())
    }
}
