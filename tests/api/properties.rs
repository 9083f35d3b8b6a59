//! A property test: random sequences of placing, the inventory check, requested status changes,
//! restocks and redelivered events, applied through the same service functions the consumers
//! use, against the real database. After every sequence the invariants hold (`oms check`), and a
//! redelivered event never changes anything.

use crate::helpers::Deployment;
use oms::auth::{Role, Viewer};
use oms::db::Db;
use oms::domain::events::{Actor, StatusChangeRequested};
use oms::domain::order::RequestedLine;
use oms::domain::status::OrderStatus;
use oms::outbox::OutboxWaker;
use oms::service::applying::{
    apply_inventory_check, apply_inventory_checks, apply_requested_change, Applied,
};
use oms::service::placer::Placer;
use oms::service::status_requests::StatusRequests;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use uuid::Uuid;

const SKUS: usize = 3;

#[derive(Clone, Debug)]
enum Step {
    Place {
        customer: u8,
        lines: Vec<(usize, i32)>,
    },
    InventoryCheck {
        order: usize,
    },
    /// Several orders' checks in one transaction, as the consumer batches them.
    InventoryChecks {
        orders: Vec<usize>,
    },
    Request {
        order: usize,
        to: OrderStatus,
        staff: bool,
    },
    Redeliver {
        event: usize,
    },
    Restock {
        sku: usize,
        quantity: i32,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let status = prop::sample::select(OrderStatus::ALL.to_vec());
    prop_oneof![
        3 => (0u8..3, prop::collection::vec((0..SKUS, 1i32..4), 1..=SKUS))
            .prop_map(|(customer, lines)| Step::Place { customer, lines }),
        3 => (0usize..16).prop_map(|order| Step::InventoryCheck { order }),
        2 => prop::collection::vec(0usize..16, 2..6)
            .prop_map(|orders| Step::InventoryChecks { orders }),
        3 => (0usize..16, status, any::<bool>())
            .prop_map(|(order, to, staff)| Step::Request { order, to, staff }),
        2 => (0usize..32).prop_map(|event| Step::Redeliver { event }),
        1 => (0..SKUS, 0i32..8).prop_map(|(sku, quantity)| Step::Restock { sku, quantity }),
    ]
}

/// An event the "consumers" applied, kept so it can be delivered again.
#[derive(Clone)]
enum Delivered {
    Placed {
        event_id: Uuid,
        order: Uuid,
    },
    Requested {
        event_id: Uuid,
        order: Uuid,
        request: StatusChangeRequested,
    },
}

async fn apply(pool: &Db, event: &Delivered) -> Applied {
    match event {
        Delivered::Placed { event_id, order } => {
            apply_inventory_check(pool, &OutboxWaker::default(), *event_id, *order)
                .await
                .unwrap()
        }
        Delivered::Requested {
            event_id,
            order,
            request,
        } => apply_requested_change(pool, &OutboxWaker::default(), *event_id, *order, request)
            .await
            .unwrap(),
    }
}

async fn snapshot(pool: &Db) -> Vec<String> {
    sqlx::query_scalar(
        "select format('%s %s %s %s', id, status, version, stock_deducted) from orders
         union all select format('%s %s', sku, quantity) from inventory_items
         union all select format('ledger %s', count(*)) from stock_movements
         union all select format('history %s', count(*)) from order_status_history
         order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Runs each client's steps at once against shared stock; then the invariants must hold.
async fn run(pool: &Db, case: usize, clients: Vec<Vec<Step>>) -> Result<(), TestCaseError> {
    let skus: Vec<String> = (0..SKUS).map(|i| format!("P{case}-S{i}")).collect();
    for sku in &skus {
        let input = oms::service::inventory::ItemInput {
            sku: sku.clone(),
            name: sku.clone(),
            quantity: 5,
            low_stock_threshold: None,
            price: oms::db::inventory::PriceChange::Keep,
        };
        oms::service::inventory::upsert_item(pool, &OutboxWaker::default(), input)
            .await
            .unwrap()
            .into_result()
            .unwrap();
    }
    let concurrent = clients.len() > 1;
    let outcomes = futures_util::future::join_all(
        clients
            .into_iter()
            .enumerate()
            .map(|(client, steps)| run_client(pool, case, client, &skus, steps, concurrent)),
    )
    .await;
    for outcome in outcomes {
        outcome?;
    }
    let report = oms::service::audit::audit(pool).await.unwrap();
    prop_assert!(report.violations.is_empty(), "{:#?}", report.violations);
    Ok(())
}

/// One client's steps. With other clients running (`concurrent`), a redelivery must still be
/// recognised, but the database as a whole may change meanwhile.
async fn run_client(
    pool: &Db,
    case: usize,
    client: usize,
    skus: &[String],
    steps: Vec<Step>,
    concurrent: bool,
) -> Result<(), TestCaseError> {
    let staff = Viewer {
        user_id: format!("staff-{case}-{client}"),
        role: Role::Staff,
        expires_at: u64::MAX,
        profile: Default::default(),
    };
    let mut orders: Vec<(Uuid, Viewer)> = Vec::new();
    let mut delivered: Vec<Delivered> = Vec::new();
    for step in steps {
        match step {
            Step::Place { customer, lines } => {
                let viewer = Viewer {
                    user_id: format!("c{case}-{client}-{customer}"),
                    role: Role::Customer,
                    expires_at: u64::MAX,
                    profile: Default::default(),
                };
                let mut requested: Vec<RequestedLine> = Vec::new();
                for (sku, quantity) in lines {
                    if !requested.iter().any(|l| l.sku == skus[sku]) {
                        requested.push(RequestedLine {
                            sku: skus[sku].clone(),
                            quantity,
                        });
                    }
                }
                let order = oms::service::placing::place_order(
                    pool,
                    &Placer::start_placing(pool.clone(), 1, 1, &oms::metrics::Metrics::new()),
                    &OutboxWaker::default(),
                    &viewer,
                    requested,
                    None,
                )
                .await
                .unwrap()
                .into_result()
                .expect("valid orders are placed");
                prop_assert_eq!(order.status, OrderStatus::Pending);
                orders.push((order.id, viewer));
            }
            Step::InventoryCheck { order } => {
                let Some((id, _)) = orders.get(order) else {
                    continue;
                };
                let event = Delivered::Placed {
                    event_id: Uuid::now_v7(),
                    order: *id,
                };
                apply(pool, &event).await;
                delivered.push(event);
            }
            Step::InventoryChecks { orders: chosen } => {
                let mut batch: Vec<(Uuid, Uuid)> = Vec::new();
                for order in chosen {
                    if let Some((id, _)) = orders.get(order) {
                        if !batch.iter().any(|(_, taken)| taken == id) {
                            batch.push((Uuid::now_v7(), *id));
                        }
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                apply_inventory_checks(pool, &OutboxWaker::default(), &batch)
                    .await
                    .unwrap();
                delivered.extend(
                    batch
                        .into_iter()
                        .map(|(event_id, order)| Delivered::Placed { event_id, order }),
                );
            }
            Step::Request {
                order,
                to,
                staff: by_staff,
            } => {
                let Some((id, owner)) = orders.get(order) else {
                    continue;
                };
                let viewer = if by_staff { &staff } else { owner };
                let outcome = oms::service::status_requests::request_status_change(
                    &StatusRequests::start_queueing(
                        pool.clone(),
                        OutboxWaker::default(),
                        1,
                        1,
                        &oms::metrics::Metrics::new(),
                    ),
                    viewer,
                    *id,
                    oms::db::orders::find(pool, *id),
                    to,
                    None,
                )
                .await
                .unwrap();
                if outcome.accepted {
                    let request = StatusChangeRequested {
                        to,
                        reason: None,
                        requested_by: Actor {
                            user_id: viewer.user_id.clone(),
                            role: viewer.role,
                        },
                    };
                    let event = Delivered::Requested {
                        event_id: Uuid::now_v7(),
                        order: *id,
                        request,
                    };
                    apply(pool, &event).await;
                    delivered.push(event);
                }
            }
            Step::Redeliver { event } => {
                let Some(event) = delivered.get(event) else {
                    continue;
                };
                let before = (!concurrent).then_some(snapshot(pool).await);
                prop_assert_eq!(apply(pool, event).await, Applied::Duplicate);
                if let Some(before) = before {
                    prop_assert_eq!(
                        snapshot(pool).await,
                        before,
                        "a redelivery changed the state"
                    );
                }
            }
            Step::Restock { sku, quantity } => {
                let input = oms::service::inventory::ItemInput {
                    sku: skus[sku].clone(),
                    name: skus[sku].clone(),
                    quantity,
                    low_stock_threshold: None,
                    price: oms::db::inventory::PriceChange::Keep,
                };
                oms::service::inventory::upsert_item(pool, &OutboxWaker::default(), input)
                    .await
                    .unwrap()
                    .into_result()
                    .unwrap();
            }
        }
    }
    Ok(())
}

/// Runs `cases` cases of `clients` (each case: one step sequence per client) on one migrated
/// database.
fn check_cases(cases: u32, clients: impl Strategy<Value = Vec<Vec<Step>>>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deployment = Deployment::new();
    let pool = runtime.block_on(deployment.migrated_db());
    let case_numbers = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&clients, |clients| {
        let case = case_numbers.fetch_add(1, Ordering::Relaxed);
        runtime.block_on(run(&pool, case, clients))
    });
    runtime.block_on(deployment.drop_database(pool));
    result.unwrap();
}

#[test]
fn random_interleavings_of_orders_changes_restocks_and_redeliveries_keep_the_invariants() {
    check_cases(
        40,
        prop::collection::vec(step(), 1..40).prop_map(|steps| vec![steps]),
    );
}

#[test]
fn clients_running_random_sequences_at_once_on_shared_stock_keep_the_invariants() {
    check_cases(
        30,
        prop::collection::vec(prop::collection::vec(step(), 1..30), 2..=4),
    );
}
