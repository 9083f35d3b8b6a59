//! Read-only queries that audit the stored state against the invariants (`oms check`).

use crate::domain::status::OrderStatus;
use sqlx::PgExecutor;
use uuid::Uuid;

/// Per SKU: stock set by staff, stock now, and stock held by orders whose stock is deducted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockBalance {
    pub sku: String,
    pub set_total: i64,
    pub quantity: i64,
    pub held_by_orders: i64,
    pub ledger_total: i64,
}

pub async fn stock_balances(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<StockBalance>> {
    sqlx::query_as!(
        StockBalance,
        r#"with set_total as (
             select sku, sum(delta) as total from stock_movements
             where reason = 'stock_set' group by sku
         ), ledger as (
             select sku, sum(delta) as total from stock_movements group by sku
         ), held as (
             select l.sku, sum(l.quantity) as total
             from order_lines l join orders o on o.id = l.order_id
             where o.status in ('CONFIRMED', 'RECEIVED', 'OUT_FOR_DELIVERY', 'DELIVERED')
             group by l.sku
         )
         select i.sku,
                coalesce(s.total, 0)::int8 as "set_total!",
                i.quantity::int8 as "quantity!",
                coalesce(h.total, 0)::int8 as "held_by_orders!",
                coalesce(g.total, 0)::int8 as "ledger_total!"
         from inventory_items i
         left join set_total s on s.sku = i.sku
         left join ledger g on g.sku = i.sku
         left join held h on h.sku = i.sku
         order by i.sku"#
    )
    .fetch_all(db)
    .await
}

/// One order with its status path, oldest change first.
#[derive(Debug, Clone)]
pub struct OrderPath {
    pub id: Uuid,
    pub status: OrderStatus,
    pub version: i32,
    pub stock_deducted: bool,
    pub versions: Vec<i32>,
    pub froms: Vec<Option<String>>,
    pub tos: Vec<String>,
}

pub async fn order_paths(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<OrderPath>> {
    sqlx::query_as!(
        OrderPath,
        r#"select o.id, o.status as "status: OrderStatus", o.version, o.stock_deducted,
                coalesce(array_agg(h.version order by h.version)
                         filter (where h.version is not null), '{}') as "versions!",
                coalesce(array_agg(h.from_status order by h.version)
                         filter (where h.version is not null), '{}') as "froms!: Vec<Option<String>>",
                coalesce(array_agg(h.to_status order by h.version)
                         filter (where h.version is not null), '{}') as "tos!"
         from orders o left join order_status_history h on h.order_id = o.id
         group by o.id"#
    )
    .fetch_all(db)
    .await
}
