//! Checks the stored state against oms's invariants (`oms check`, and the tests):
//!
//! - stock never below zero, and conserved per SKU: stock set by staff = stock now + stock held
//!   by orders whose stock is deducted (CONFIRMED, RECEIVED, OUT_FOR_DELIVERY, DELIVERED); the
//!   ledger sums to the stock now;
//! - every order's history is a path the status machine allows, versions 1, 2, 3, ... without
//!   gaps, ending at the order's status and version; its stock flag matches its status.

use crate::db;
use crate::db::Db;
use crate::domain::status::{ChangeOrigin, OrderStatus};

/// What `oms check` found.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub skus_checked: usize,
    pub orders_checked: usize,
    pub violations: Vec<String>,
}

pub async fn audit(pool: &Db) -> sqlx::Result<AuditReport> {
    let mut report = AuditReport::default();
    for balance in db::audit::stock_balances(pool).await? {
        report.skus_checked += 1;
        let sku = &balance.sku;
        if balance.quantity < 0 {
            report
                .violations
                .push(format!("{sku}: stock is {}", balance.quantity));
        }
        if balance.set_total != balance.quantity + balance.held_by_orders {
            report.violations.push(format!(
                "{sku}: stock set {} != stock now {} + held by orders {}",
                balance.set_total, balance.quantity, balance.held_by_orders
            ));
        }
        if balance.ledger_total != balance.quantity {
            report.violations.push(format!(
                "{sku}: ledger sums to {} but stock is {}",
                balance.ledger_total, balance.quantity
            ));
        }
    }
    for path in db::audit::order_paths(pool).await? {
        report.orders_checked += 1;
        report.violations.extend(check_path(&path));
    }
    Ok(report)
}

fn check_path(path: &db::audit::OrderPath) -> Vec<String> {
    let id = path.id;
    let mut problems = Vec::new();
    let expected: Vec<i32> = (1..=path.versions.len() as i32).collect();
    if path.versions != expected {
        problems.push(format!(
            "order {id}: history versions {:?} have gaps",
            path.versions
        ));
    }
    if path.versions.last() != Some(&path.version) {
        problems.push(format!(
            "order {id}: version {} but history ends at {:?}",
            path.version,
            path.versions.last()
        ));
    }
    let mut current: Option<OrderStatus> = None;
    for (from, to) in path.froms.iter().zip(&path.tos) {
        let (Ok(to), Ok(from)) = (
            to.parse::<OrderStatus>(),
            from.as_deref().map(str::parse::<OrderStatus>).transpose(),
        ) else {
            problems.push(format!("order {id}: unknown status in history"));
            break;
        };
        if from != current {
            problems.push(format!(
                "order {id}: history jumps from {current:?} to a change from {from:?}"
            ));
        }
        let allowed = match current {
            None => to == OrderStatus::Pending,
            Some(previous) => [ChangeOrigin::InventoryCheck, ChangeOrigin::Request]
                .into_iter()
                .any(|origin| previous.transition_to(to, origin).is_ok()),
        };
        if !allowed {
            problems.push(format!("order {id}: {current:?} -> {to} is not allowed"));
        }
        current = Some(to);
    }
    if current != Some(path.status) {
        problems.push(format!(
            "order {id}: status {} but history ends at {current:?}",
            path.status
        ));
    }
    if path.stock_deducted != path.status.holds_stock() {
        problems.push(format!(
            "order {id}: status {} with stock_deducted = {}",
            path.status, path.stock_deducted
        ));
    }
    problems
}
