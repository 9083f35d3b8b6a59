//! The one-statement status change (`db::orders::write_change`) writes only over the rows as its
//! transaction locked them: if the order or a stock item moved on since, it fails, and the
//! transaction (rolled back) has written nothing.

use crate::helpers::Deployment;
use oms::auth::{Role, Viewer};
use oms::db;
use oms::db::inventory::InventoryItemRow;
use oms::db::orders::{ChangeToWrite, OrderRow};
use oms::db::Db;
use oms::domain::events::StockChangeReason;
use oms::domain::order::RequestedLine;
use oms::domain::status::OrderStatus;
use oms::outbox::OutboxWaker;
use oms::service::applying::apply_inventory_check;
use oms::service::inventory::{upsert_item, ItemInput};
use oms::service::placer::Placer;
use oms::service::placing::place_order;
use uuid::Uuid;

/// Counts of what a change writes: ledger rows, history entries, outbox events.
async fn written_rows(pool: &Db) -> (i64, i64, i64) {
    sqlx::query_as(
        "select (select count(*) from stock_movements), (select count(*) from order_status_history),
                (select count(*) from outbox)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Staff set the item's stock to `quantity`.
async fn set_stock(pool: &Db, sku: &str, quantity: i32) {
    let input = ItemInput {
        sku: sku.into(),
        name: sku.into(),
        quantity,
        low_stock_threshold: None,
        price: oms::db::inventory::PriceChange::Keep,
    };
    upsert_item(pool, &OutboxWaker::default(), input)
        .await
        .unwrap()
        .into_result()
        .unwrap();
}

/// The item as it is stored now.
async fn stored_item(pool: &Db, sku: &str) -> InventoryItemRow {
    db::inventory::find_by_skus(pool, &[sku.to_owned()])
        .await
        .unwrap()
        .remove(0)
}

async fn place_pending_order(pool: &Db, sku: &str) -> OrderRow {
    set_stock(pool, sku, 10).await;
    let alice = Viewer {
        user_id: "alice".into(),
        role: Role::Customer,
        expires_at: u64::MAX,
        profile: Default::default(),
    };
    let line = RequestedLine {
        sku: sku.into(),
        quantity: 2,
    };
    let placer = Placer::start_placing(pool.clone(), 1, 1, &oms::metrics::Metrics::new());
    place_order(
        pool,
        &placer,
        &OutboxWaker::default(),
        &alice,
        vec![line],
        None,
    )
    .await
    .unwrap()
    .into_result()
    .unwrap()
}

/// Tries to move `order` (as it was read) to `to`, moving the stock of `stock_moves` (items as
/// they were read), in a transaction that is committed only if the change was written, as the
/// consumers do.
async fn write_change_over(
    pool: &Db,
    order: &OrderRow,
    to: OrderStatus,
    stock_moves: &[(&InventoryItemRow, i32)],
) -> sqlx::Result<OrderRow> {
    let changed = OrderRow {
        status: to,
        version: order.version + 1,
        stock_deducted: !stock_moves.is_empty(),
        ..order.clone()
    };
    let (entry, _) = oms::service::status_change(&changed, Some(order.status), None, None);
    let mut tx = pool.begin().await.unwrap();
    let written = db::orders::write_change(
        &mut tx,
        &ChangeToWrite {
            order: &changed,
            entry: &entry,
            stock: (!stock_moves.is_empty()).then_some(db::orders::StockMoves {
                reason: StockChangeReason::OrderConfirmed,
                moves: stock_moves,
            }),
            events: &[],
        },
    )
    .await?;
    tx.commit().await?;
    Ok(written)
}

#[tokio::test]
async fn a_change_over_an_order_that_moved_on_since_it_was_read_writes_nothing() {
    let deployment = Deployment::new();
    let pool = deployment.migrated_db().await;
    let read = place_pending_order(&pool, "LAMP").await;
    let item = stored_item(&pool, "LAMP").await;
    // Meanwhile the inventory check confirms it (version 2, 2 units deducted).
    apply_inventory_check(&pool, &OutboxWaker::default(), Uuid::now_v7(), read.id)
        .await
        .unwrap();
    let before = written_rows(&pool).await;

    let stale = write_change_over(&pool, &read, OrderStatus::Rejected, &[]).await;

    assert!(matches!(stale, Err(sqlx::Error::RowNotFound)), "{stale:?}");
    assert_eq!(written_rows(&pool).await, before);
    let after = stored_item(&pool, "LAMP").await;
    assert_eq!((after.quantity, after.version), (8, item.version + 1));
    let stored = db::orders::find(&pool, read.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.version), (OrderStatus::Confirmed, 2));
    deployment.drop_database(pool).await;
}

#[tokio::test]
async fn a_change_over_stock_that_moved_on_since_it_was_locked_writes_nothing() {
    let deployment = Deployment::new();
    let pool = deployment.migrated_db().await;
    let order = place_pending_order(&pool, "RUG").await;
    let read_item = stored_item(&pool, "RUG").await;
    // Staff set the stock after it was read.
    set_stock(&pool, "RUG", 1).await;
    let before = written_rows(&pool).await;

    let stale = write_change_over(&pool, &order, OrderStatus::Confirmed, &[(&read_item, -2)]).await;

    assert!(matches!(stale, Err(sqlx::Error::RowNotFound)), "{stale:?}");
    assert_eq!(written_rows(&pool).await, before);
    let stored = db::orders::find(&pool, order.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.version), (OrderStatus::Pending, 1));
    let rug = stored_item(&pool, "RUG").await;
    assert_eq!(rug.quantity, 1);
    deployment.drop_database(pool).await;
}
