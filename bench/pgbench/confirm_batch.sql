-- pgbench script: the inventory consumer's batched check (src/service/applying.rs
-- apply_inventory_checks), run by run.sh's "+batch" cases beside clients that only place orders
-- (place_and_confirm.sql with -D confirm=0). One pgbench "transaction" of this script = one
-- batch = one database transaction confirming up to :batch orders:
--
--   0. what Kafka would deliver: the oldest placed orders no other batch has taken (oms reads
--      them from the topic; here the orders table stands in, and SKIP LOCKED keeps concurrent
--      batches apart as the consumer's distinct keys do)
--   3. orders::lock_for_events: the inbox marks and the orders' rows, in one statement
--   4. inventory::lock_stock_of_orders: the orders' lines with their items, locked in id order
--   5. orders::write_changes: one statement for the whole batch: the stock moved per item, the
--      ledger rows, the orders (CONFIRMED, version 2, stock deducted), their history entries,
--      one StockLevelChanged per line and one OrderStatusChanged per order in the outbox
--
-- Where it differs from oms: oms decides each order in memory and binds the resulting arrays to
-- statement 5; here statement 5 derives the same rows from order_lines (every order fits:
-- run.sh seeds ample stock). Event ids are made server-side (bench_uuid_v7()), and payloads by
-- format(...), of oms's field names and about its sizes, as in place_and_confirm.sql.
--
-- Variables (-D): batch  most orders in one transaction [OMS_INVENTORY_BATCH_MAX, 256]

BEGIN;

-- 0. the next orders to check
select coalesce(array_agg(id order by id), '{}') as ids, count(*) as n
  from (select id from orders where status = 'PENDING' order by id limit :batch
        for update skip locked) waiting \gset b_

\if :b_n
-- 3. orders::lock_for_events
with inbox as (
    insert into processed_events (consumer, event_id)
    select 'inventory', bench_uuid_v7() from unnest(:b_ids::uuid[])
    on conflict do nothing
    returning event_id
)
select (select count(*) from inbox) as first_time, o.id, o.user_id, o.status,
       o.rejection_reason, o.version, o.stock_deducted, o.idempotency_key, o.created_at,
       o.updated_at
  from unnest(:b_ids::uuid[]) as event(order_id)
  join orders o on o.id = event.order_id
 where o.id = any(:b_ids::uuid[])
 order by o.id
   for update of o;

-- 4. inventory::lock_stock_of_orders
with lines as (
    select order_id, line_no, sku, quantity from order_lines where order_id = any(:b_ids::uuid[])
), locked as (
    select id, sku, name, quantity, low_stock_threshold, updated_at, version from inventory_items
     where sku = any(array(select sku from lines)) order by id for no key update
)
select lines.order_id, lines.sku as line_sku, lines.quantity as requested, locked.*
  from lines left join locked on locked.sku = lines.sku
 order by lines.order_id, lines.line_no;

-- 5. orders::write_changes
with lines as (
    select order_id, sku, quantity from order_lines where order_id = any(:b_ids::uuid[])
), per_item as (
    select sku, -sum(quantity)::int as delta, count(*)::int as moves from lines group by sku
), moved as (
    update inventory_items item
    set quantity = item.quantity + m.delta, version = item.version + m.moves, updated_at = now()
    from per_item m
    where item.sku = m.sku and item.version = item.version
      and item.sku = any(array(select sku from per_item))
    returning item.sku
), ledger as (
    insert into stock_movements (sku, order_id, delta, reason)
    select sku, order_id, -quantity, 'order_confirmed' from lines
), changed as (
    update orders o
       set status = 'CONFIRMED', version = 2, rejection_reason = null, stock_deducted = true,
           updated_at = now()
     where o.id = any(:b_ids::uuid[]) and o.version = 1
    returning o.id, o.user_id, o.version, o.updated_at
), history as (
    insert into order_status_history
        (order_id, version, from_status, to_status, reason, actor_id, actor_role, at)
    select id, version, 'PENDING', 'CONFIRMED', null, null, null, updated_at from changed
), events as (
    insert into outbox (event_id, stream, message_key, payload)
    select bench_uuid_v7(), 'stock-levels', sku,
           format('{"eventId":"%s","schemaVersion": 1,"sku":"%s","version":%s,"name":"Bench item","quantity":%s,"delta":%s,"lowStockThreshold": 10,"wasLowStock": false,"reason":"ORDER_CONFIRMED","orderId":"%s","occurredAt":"%s"}',
                  bench_uuid_v7()::text, sku, 1234, 999998765, -quantity, order_id::text,
                  (to_json(now() at time zone 'UTC') #>> '{}') || 'Z')::jsonb
      from lines
    union all
    select bench_uuid_v7(), 'order-status', id::text,
           format('{"eventId":"%s","schemaVersion": 1,"orderId":"%s","version": 2,"occurredAt":"%s","type":"OrderStatusChanged","data":{"userId":"%s","from":"PENDING","to":"CONFIRMED","reason": null,"changedBy": null}}',
                  bench_uuid_v7()::text, id::text, (to_json(updated_at at time zone 'UTC') #>> '{}') || 'Z', user_id)::jsonb
      from changed
)
select (select count(*) from changed) as orders_changed, (select count(*) from moved) as items_moved;
\else
-- Nothing waiting: the consumer would wait for the broker's next fetch.
\sleep 2 ms
\endif

COMMIT;
