-- Listing orders and inventory items by filter. Orders, in creation or update order
-- (`orders(filter, orderBy)`, `orderCounts`): every filter and both sort orders are served by an
-- index. The sort time and
-- the id together are each list's keyset. (Plain CREATE INDEX locks writes to the table while it
-- builds; on a large table, create these CONCURRENTLY by hand first: the IF NOT EXISTS makes this
-- migration skip them.)
create index if not exists orders_by_created on orders (created_at, id);
create index if not exists orders_by_updated on orders (updated_at, id);
create index if not exists orders_by_user_created on orders (user_id, created_at, id);
create index if not exists orders_by_status_created on orders (status, created_at, id);
create index if not exists order_lines_by_sku on order_lines (sku, order_id);
-- Replaced by the two above (the id orders like the creation time, but lists now sort by time).
drop index if exists orders_by_user;
drop index if exists orders_by_status;
-- Inventory items by SKU or name prefix, ignoring case (`inventoryItems(filter: {search})`), and
-- the low-stock ones (`filter: {lowStock: true}`).
create index if not exists inventory_items_by_lower_sku on inventory_items (lower(sku) text_pattern_ops);
create index if not exists inventory_items_by_lower_name on inventory_items (lower(name) text_pattern_ops);
create index if not exists inventory_items_low_stock on inventory_items (sku) where quantity <= low_stock_threshold;
