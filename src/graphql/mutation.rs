//! Mutations. Business failures come back in `userErrors`; only authentication, authorization
//! and outages are top-level errors.

use super::coalescing::CoalescingLoader;
use super::customers::{
    profile_change, Customer, CustomerProfilePayload, UpdateCustomerInput, UpdateMyProfileInput,
};
use super::loaders::OrderById;
use super::types::{InventoryItem, Order};
use super::{mutating_viewer, staff};
use crate::db::customers::CustomerRow;
use crate::db::inventory::PriceChange;
use crate::db::Db;
use crate::domain::order::RequestedLine;
use crate::domain::status::OrderStatus;
use crate::domain::user_error::{UserError, UserErrorCode};
use crate::error::IntoGraphql;
use crate::metrics::Metrics;
use crate::outbox::OutboxWaker;
use crate::service;
use crate::service::customers::ClaimsTaken;
use crate::service::placer::Placer;
use crate::service::status_requests::StatusRequests;
use crate::service::Outcome;
use async_graphql::{Context, InputObject, MaybeUndefined, Object, SimpleObject, ID};

pub struct MutationRoot;

#[derive(InputObject)]
pub struct OrderLineInput {
    /// The inventory item's SKU (letters, digits, `.`, `_`, `-`; at most 64).
    pub sku: String,
    /// Units wanted, 1 to 10000.
    pub quantity: i32,
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    /// 1 to 100 lines, each SKU once.
    pub items: Vec<OrderLineInput>,
    /// Retrying with the same key returns the first order instead of placing another.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct PlaceOrderPayload {
    /// The order, PENDING until the inventory check decides.
    pub order: Option<Order>,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct UpdateOrderStatusInput {
    pub order_id: ID,
    pub status: OrderStatus,
    /// Why (at most 500 characters); kept in the order's history.
    pub reason: Option<String>,
}

#[derive(SimpleObject)]
pub struct UpdateOrderStatusPayload {
    /// The order as it stands when the request is queued (before the change is applied).
    pub order: Option<Order>,
    /// The change was queued; its outcome arrives on `orderStatusChanged`.
    pub accepted: bool,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct UpsertInventoryItemInput {
    pub sku: String,
    pub name: String,
    /// Units in stock, 0 or more.
    pub quantity: i32,
    /// Kept as it is when omitted (0 for a new item).
    pub low_stock_threshold: Option<i32>,
    /// Kept as it is when omitted (none for a new item); null removes it. Orders already
    /// placed keep the prices they were placed at.
    pub price: MaybeUndefined<MoneyInput>,
}

/// An amount of money: `amount` in minor units (cents for EUR and USD, yen for JPY) of
/// `currency`, an ISO 4217 code.
#[derive(InputObject)]
pub struct MoneyInput {
    pub amount: i32,
    pub currency: String,
}

#[derive(InputObject)]
pub struct RetireInventoryItemInput {
    pub sku: String,
}

#[derive(SimpleObject)]
pub struct RetireInventoryItemPayload {
    /// The item, retired.
    pub item: Option<InventoryItem>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct UpsertInventoryItemPayload {
    pub item: Option<InventoryItem>,
    pub user_errors: Vec<UserError>,
}

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Places an order. It is stored PENDING and checked against stock right away; follow it on
    /// `orderStatusChanged`.
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        input: PlaceOrderInput,
    ) -> async_graphql::Result<PlaceOrderPayload> {
        let viewer = mutating_viewer(ctx)?;
        take_claims(ctx, viewer).await?;
        let lines = input
            .items
            .into_iter()
            .map(|line| RequestedLine {
                sku: line.sku,
                quantity: line.quantity,
            })
            .collect();
        let result = service::placing::place_order(
            ctx.data_unchecked::<Db>(),
            ctx.data_unchecked::<Placer>(),
            ctx.data_unchecked::<OutboxWaker>(),
            viewer,
            lines,
            input.idempotency_key,
        )
        .await
        .gql()?;
        Ok(match result {
            Outcome::Done(order) => {
                ctx.data_unchecked::<Metrics>().orders_placed.inc();
                PlaceOrderPayload {
                    order: Some(Order::from(order)),
                    user_errors: vec![],
                }
            }
            Outcome::Refused(user_errors) => PlaceOrderPayload {
                order: None,
                user_errors,
            },
        })
    }

    /// Asks for a status change. Customers may only cancel their own orders; staff may make any
    /// change the status machine allows (CONFIRMED and REJECTED are the inventory check's).
    async fn update_order_status(
        &self,
        ctx: &Context<'_>,
        input: UpdateOrderStatusInput,
    ) -> async_graphql::Result<UpdateOrderStatusPayload> {
        let viewer = mutating_viewer(ctx)?;
        take_claims(ctx, viewer).await?;
        let Ok(order_id) = input.order_id.parse() else {
            return Ok(UpdateOrderStatusPayload {
                order: None,
                accepted: false,
                user_errors: vec![UserError::new(
                    ["orderId"],
                    UserErrorCode::InvalidId,
                    format!("{:?} is not an order id (a UUID)", input.order_id.as_str()),
                )],
            });
        };
        let outcome = service::status_requests::request_status_change(
            ctx.data_unchecked::<StatusRequests>(),
            viewer,
            order_id,
            ctx.data_unchecked::<CoalescingLoader<_, OrderById>>()
                .load_one(order_id),
            input.status,
            input.reason,
        )
        .await
        .gql()?;
        Ok(UpdateOrderStatusPayload {
            order: outcome.order.map(Order::from),
            accepted: outcome.accepted,
            user_errors: outcome.user_errors,
        })
    }

    /// Creates or updates an inventory item (staff only).
    async fn upsert_inventory_item(
        &self,
        ctx: &Context<'_>,
        input: UpsertInventoryItemInput,
    ) -> async_graphql::Result<UpsertInventoryItemPayload> {
        staff(ctx)?;
        let result = service::inventory::upsert_item(
            ctx.data_unchecked::<Db>(),
            ctx.data_unchecked::<OutboxWaker>(),
            service::inventory::ItemInput {
                sku: input.sku,
                name: input.name,
                quantity: input.quantity,
                low_stock_threshold: input.low_stock_threshold,
                price: match input.price {
                    MaybeUndefined::Undefined => PriceChange::Keep,
                    MaybeUndefined::Null => PriceChange::Clear,
                    MaybeUndefined::Value(price) => {
                        PriceChange::Set(i64::from(price.amount), price.currency)
                    }
                },
            },
        )
        .await
        .gql()?;
        Ok(match result {
            Outcome::Done(item) => UpsertInventoryItemPayload {
                item: Some(InventoryItem(item)),
                user_errors: vec![],
            },
            Outcome::Refused(user_errors) => UpsertInventoryItemPayload {
                item: None,
                user_errors,
            },
        })
    }

    /// Retires an inventory item (staff only): no new order may name it; it stays in every
    /// order, ledger row and history entry, and its stock stays. `upsertInventoryItem` brings
    /// it back. Retiring a retired item changes nothing.
    async fn retire_inventory_item(
        &self,
        ctx: &Context<'_>,
        input: RetireInventoryItemInput,
    ) -> async_graphql::Result<RetireInventoryItemPayload> {
        staff(ctx)?;
        let result = service::inventory::retire_item(
            ctx.data_unchecked::<Db>(),
            ctx.data_unchecked::<OutboxWaker>(),
            &input.sku,
        )
        .await
        .gql()?;
        Ok(match result {
            Outcome::Done(item) => RetireInventoryItemPayload {
                item: Some(InventoryItem(item)),
                user_errors: vec![],
            },
            Outcome::Refused(user_errors) => RetireInventoryItemPayload {
                item: None,
                user_errors,
            },
        })
    }

    /// Changes the caller's own customer profile; fields left out stay as they are.
    async fn update_my_profile(
        &self,
        ctx: &Context<'_>,
        input: UpdateMyProfileInput,
    ) -> async_graphql::Result<CustomerProfilePayload> {
        let viewer = mutating_viewer(ctx)?;
        let change = profile_change(input.name, input.email, input.phone);
        let result = service::customers::update_own_profile(
            ctx.data_unchecked::<Db>(),
            ctx.data_unchecked::<ClaimsTaken>(),
            viewer,
            change,
        )
        .await
        .gql()?;
        Ok(profile_payload(result))
    }

    /// Changes any customer's profile (staff only); fields left out stay as they are.
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerInput,
    ) -> async_graphql::Result<CustomerProfilePayload> {
        staff(ctx)?;
        let change = profile_change(input.name, input.email, input.phone);
        let result =
            service::customers::update_customer(ctx.data_unchecked::<Db>(), &input.id, change)
                .await
                .gql()?;
        Ok(profile_payload(result))
    }
}

fn profile_payload(result: Outcome<CustomerRow>) -> CustomerProfilePayload {
    match result {
        Outcome::Done(customer) => CustomerProfilePayload {
            customer: Some(Customer(customer)),
            user_errors: vec![],
        },
        Outcome::Refused(user_errors) => CustomerProfilePayload {
            customer: None,
            user_errors,
        },
    }
}

/// Takes the profile claims of the caller's token into their customer profile (see
/// [`service::customers::take_claims`]): a customer who acts is a customer oms knows.
async fn take_claims(ctx: &Context<'_>, viewer: &crate::auth::Viewer) -> async_graphql::Result<()> {
    service::customers::take_claims(
        ctx.data_unchecked::<Db>(),
        ctx.data_unchecked::<ClaimsTaken>(),
        viewer,
    )
    .await
    .gql()
}
