-- Prices (ISO 4217 currency, amount in minor units). An item's price is set by staff and may
-- change at any time; each order line keeps the unit price its item had when the order was
-- placed, and the order its total, so a placed order's total never changes. Existing items and
-- orders have no price (null): their totals stay unknown.
alter table inventory_items
    add column price_amount bigint check (price_amount between 0 and 2147483647),
    add column price_currency text check (price_currency ~ '^[A-Z]{3}$'),
    add constraint inventory_items_price_complete
        check ((price_amount is null) = (price_currency is null));

alter table order_lines
    add column unit_price_amount bigint,
    add column unit_price_currency text;

-- One order, one currency: placing computes the currency 'MIXED' when its lines' prices differ,
-- which this check refuses (placing maps it to the userError CURRENCY_MISMATCH). The total fits
-- GraphQL's Int.
alter table orders
    add column total_amount bigint,
    add column total_currency text,
    add constraint orders_total_one_currency check (total_currency ~ '^[A-Z]{3}$'),
    add constraint orders_total_in_range check (total_amount between 0 and 2147483647);
