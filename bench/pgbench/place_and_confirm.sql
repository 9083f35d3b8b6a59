-- pgbench script: the SQL oms runs for one order, placed and then confirmed by the inventory
-- check. One pgbench "transaction" of this script = one order = two database transactions, so
-- pgbench's tps is orders/s (placed + confirmed pairs per second).
--
-- Statement for statement, this is what oms sends (sqlx, extended protocol; use -M prepared):
--
--   placing (src/service/placing.rs place_order; the GraphQL placeOrder mutation with an
--   idempotency key, the path every cart takes), on the pool (autocommit):
--       1. orders::find_by_idempotency_key                   -> no row: a new key
--       2. orders::insert_placed: one statement of data-modifying CTEs: the order with its
--          total and its lines with their unit prices (read from the items), its first history
--          entry, OrderPlaced + OrderStatusChanged in the outbox, the customer's row if they
--          have none (atomic without a transaction); each line passes the trigger refusing
--          retired items
--
--   confirming (src/service/applying.rs apply_inventory_check, run by the inventory consumer
--   for the OrderPlaced event), one transaction:
--       3. orders::lock_for_event: the inbox mark ('inventory', event id, on conflict do
--          nothing) and the order's row, select ... for update, in one statement
--       4. inventory::lock_stock_of_order: the order's lines with their items, the items
--          locked in id order (for no key update)
--       5. orders::write_change: one statement: the stock moved (quantity, item version) and
--          its ledger rows, the order (CONFIRMED, version 2, stock deducted), its history entry,
--          one StockLevelChanged per line + OrderStatusChanged in the outbox
--
--   No NOTIFY: a writer wakes the relay of its own instance in-process; a relay sends a NOTIFY
--   only when another instance's relay is active (src/outbox/mod.rs). With -D notify=1 each
--   writing statement also calls pg_notify, as oms did before: a NOTIFY in a transaction holds
--   a database-wide lock through its commit, so the writing transactions commit one by one.
--
-- Not in this script:
--   - the outbox relay (select the oldest rows, delete them by id once Kafka has them): it is
--     one connection in oms, so run.sh runs it as a separate single-client pgbench
--     (relay.sql) alongside this one;
--   - Kafka itself, GraphQL/HTTP, JWT, and whatever a client reads afterwards (queries,
--     subscriptions' loaders);
--   - the rejection path: stock is seeded large, so every order is confirmed.
--
-- Where it differs from oms (cost-neutral as far as the database is concerned):
--   - ids are generated server-side by bench_uuid_v7() (UUIDv7, time-ordered like oms's
--     Uuid::now_v7(), so index inserts have oms's locality) instead of being bound as
--     parameters; run.sh creates that helper and bench_sku(n) = 'SKU-' || lpad(n, 6, '0').
--   - SKU and quantity arrays are built in SQL from pgbench integers, not bound as text[]/int[].
--   - JSON payloads are built with format(...) and parsed by the ::jsonb cast (oms sends JSON
--     text that the server parses too), with oms's field names and about its sizes (250-330
--     bytes each); numbers inside the StockLevelChanged payloads (quantity, version) are
--     stand-ins of the same width, since pgbench cannot carry the rows statement 4 returns.
--     For the same reason, write_change's guard that each item is still at the version it was
--     locked at compares the item's version with itself here.
--   - occurredAt / at use the server clock rather than the application's.
--   - the order's user is a random one of the users variable, its role customer.
--
-- Variables: pgbench has no defaults, so pass every one with -D name=value (run.sh does;
-- its values in brackets):
--   nskus     catalogue size: SKUs 1..nskus exist                           [50000]
--   hot_skus  SKUs 1..hot_skus are the hot ones, at least 3                [5]
--   hot_pct   % chance that each line takes a hot SKU                      [uniform 0, hot 90]
--   cold_from first SKU a line that is not hot may take (hot_skus + 1 in the hot catalogue,
--             so hot and cold picks never collide; 1 in the uniform one)  [uniform 1, hot 6]
--   users     distinct customers                                           [100000]
--   notify    0: no pg_notify, as oms; 1: in both writing transactions      [0]
--   nokey     1: lock the stock FOR NO KEY UPDATE, as oms does; 0: FOR UPDATE, as it did [1]
--   confirm   1: confirm each order here; 0: only place it (confirm_batch.sql confirms)   [1]
--
-- Note (found with this script): inserting order_lines takes FOR KEY SHARE on each line's
-- inventory_items row (the sku foreign key), in the order of the request's lines, while the
-- inventory check takes FOR UPDATE on the rows in id order. FOR UPDATE conflicts with FOR KEY
-- SHARE, so on shared SKUs placing waits for inventory checks and vice versa, and the two
-- orders of locking can deadlock (Postgres breaks it after deadlock_timeout, 1 s, failing one
-- of the two transactions). FOR NO KEY UPDATE (nokey=1) takes neither of those waits; the stock
-- update itself only takes that level, as it does not change the sku.

-- The order: 1-3 lines of distinct SKUs, 1-3 units each.
\set nlines random(1, 3)
\set ncold :nskus - :cold_from + 1
\set c1 random(0, :ncold - 1)
\set c2 random(1, :ncold - 1)
\set c3 random(1, :ncold - 2)
\set c3 case when :c3 >= :c2 then :c3 + 1 else :c3 end
\set c2 :cold_from + (:c1 + :c2) % :ncold
\set c3 :cold_from + (:c1 + :c3) % :ncold
\set c1 :cold_from + :c1
\set h1 random(0, :hot_skus - 1)
\set h2 random(1, :hot_skus - 1)
\set h3 random(1, :hot_skus - 2)
\set h3 case when :h3 >= :h2 then :h3 + 1 else :h3 end
\set h2 1 + (:h1 + :h2) % :hot_skus
\set h3 1 + (:h1 + :h3) % :hot_skus
\set h1 1 + :h1
\set k1 case when random(1, 100) <= :hot_pct then :h1 else :c1 end
\set k2 case when random(1, 100) <= :hot_pct then :h2 else :c2 end
\set k3 case when random(1, 100) <= :hot_pct then :h3 else :c3 end
\set q1 random(1, 3)
\set q2 random(1, 3)
\set q3 random(1, 3)
\set uid random(1, :users)
\set cart random(1, 1000000000000)

-- ===================================== placing =====================================

-- 1. find_by_idempotency_key (autocommit)
select id, user_id, status, rejection_reason, version, stock_deducted, idempotency_key,
       created_at, updated_at
  from orders where user_id = 'user-' || :uid and idempotency_key = 'cart-' || :cart;

-- 2. insert_placed (autocommit; the event ids ride along: oms makes them in the application)
with ids as (
    select bench_uuid_v7() as id, bench_uuid_v7() as placed_event,
           bench_uuid_v7() as changed_event, now() as at
), priced as (
    select line.no::int as line_no, line.sku, line.quantity, item.price_amount,
           item.price_currency
      from unnest((array[bench_sku(:k1), bench_sku(:k2), bench_sku(:k3)])[1 : :nlines],
                  (array[:q1, :q2, :q3]::int[])[1 : :nlines])
                with ordinality as line(sku, quantity, no)
      -- One index lookup per line, whatever the plan would make of a join.
      left join lateral (select price_amount, price_currency from inventory_items
                         where inventory_items.sku = line.sku) item on true
), total as (
    select case when bool_and(price_amount is not null)
                then sum(quantity * price_amount) end as amount,
           case when count(distinct price_currency) > 1 then 'MIXED'
                when bool_and(price_amount is not null) then min(price_currency)
           end as currency
      from priced
), placed as (
    insert into orders (id, user_id, status, version, idempotency_key, created_at, updated_at,
                        total_amount, total_currency)
    select id, 'user-' || :uid, 'PENDING', 1, 'cart-' || :cart, at, at, total.amount,
           total.currency
      from ids, total
    returning id, user_id, status, rejection_reason, version, stock_deducted, idempotency_key,
              created_at, updated_at, total_amount, total_currency
), lines as (
    insert into order_lines (order_id, line_no, sku, quantity, unit_price_amount,
                             unit_price_currency)
    select ids.id, line_no, sku, quantity, price_amount, price_currency from ids, priced
), history as (
    insert into order_status_history
        (order_id, version, from_status, to_status, reason, actor_id, actor_role, at)
    select id, 1, null, 'PENDING', null, 'user-' || :uid, 'customer', at from ids
), events as (
    insert into outbox (event_id, stream, message_key, payload)
    select unnest(array[placed_event, changed_event]),
           unnest(array['inventory', 'order-status']::text[]),
           unnest(array[id::text, id::text]),
           unnest(array[
               format('{"eventId":"%s","schemaVersion": 1,"orderId":"%s","version": 1,"occurredAt":"%s","type":"OrderPlaced","data":{"userId":"user-%s","lines":[%s]}}',
                      placed_event::text, id::text, (to_json(at at time zone 'UTC') #>> '{}') || 'Z', :uid::text,
                      array_to_string((array[
                          format('{"sku":"%s","quantity":%s}', bench_sku(:k1), :q1::int),
                          format('{"sku":"%s","quantity":%s}', bench_sku(:k2), :q2::int),
                          format('{"sku":"%s","quantity":%s}', bench_sku(:k3), :q3::int)])[1 : :nlines], ',')),
               format('{"eventId":"%s","schemaVersion": 1,"orderId":"%s","version": 1,"occurredAt":"%s","type":"OrderStatusChanged","data":{"userId":"user-%s","from": null,"to":"PENDING","reason": null,"changedBy":{"userId":"user-%s","role":"customer"}}}',
                      changed_event::text, id::text, (to_json(at at time zone 'UTC') #>> '{}') || 'Z', :uid::text, :uid::text)
           ]::jsonb[])
      from ids
), customer as (
    insert into customers (id, created_at, updated_at)
    select 'user-' || :uid, at, at from ids
    on conflict (id) do nothing
)
select placed.*, ids.placed_event,
       case when :notify = 1 then pg_notify('oms_outbox', '')::text end as notified
  from placed, ids \gset p_

-- ==================================== confirming ====================================
-- (confirm=0: left to confirm_batch.sql, as run.sh's "+batch" cases do)

\if :confirm
BEGIN;

-- 3. orders::lock_for_event (the inbox mark and the order's lock)
with inbox as (
    insert into processed_events (consumer, event_id) values ('inventory', :p_placed_event::uuid)
    on conflict do nothing
    returning 1
)
select exists(select 1 from inbox) as first_time, id, user_id, status, rejection_reason, version,
       stock_deducted, idempotency_key, created_at, updated_at
  from orders where id = :p_id::uuid for update of orders;

-- 4. inventory::lock_stock_of_order (one global order: by id). nokey=1 takes FOR NO KEY
--    UPDATE, which does not conflict with the FOR KEY SHARE locks that placing's order_lines
--    foreign key takes on the same items (FOR UPDATE does: see the note at the top).
\if :nokey
with lines as (
    select line_no, sku, quantity from order_lines where order_id = :p_id::uuid
), locked as (
    select id, sku, name, quantity, low_stock_threshold, updated_at, version from inventory_items
     where sku = any(array(select sku from lines)) order by id for no key update
)
select lines.sku as line_sku, lines.quantity as requested, locked.*
  from lines left join locked on locked.sku = lines.sku order by lines.line_no;
\else
with lines as (
    select line_no, sku, quantity from order_lines where order_id = :p_id::uuid
), locked as (
    select id, sku, name, quantity, low_stock_threshold, updated_at, version from inventory_items
     where sku = any(array(select sku from lines)) order by id for update
)
select lines.sku as line_sku, lines.quantity as requested, locked.*
  from lines left join locked on locked.sku = lines.sku order by lines.line_no;
\endif

-- 5. orders::write_change (PENDING -> CONFIRMED, version 2, no actor: the inventory check)
with moved as (
    update inventory_items item
    set quantity = item.quantity + m.delta, version = item.version + 1, updated_at = now()
    from unnest((array[bench_sku(:k1), bench_sku(:k2), bench_sku(:k3)])[1 : :nlines],
                (array[-:q1::int, -:q2::int, -:q3::int])[1 : :nlines]) as m(sku, delta)
    where item.sku = m.sku and item.version = item.version
    returning item.sku, m.delta
), ledger as (
    insert into stock_movements (sku, order_id, delta, reason)
    select sku, :p_id::uuid, delta, 'order_confirmed' from moved
), changed as (
    update orders
       set status = 'CONFIRMED', version = 2, rejection_reason = null, stock_deducted = true,
           updated_at = now()
     where id = :p_id::uuid and version = 1
    returning id, user_id, status, rejection_reason, version, stock_deducted, idempotency_key,
              created_at, updated_at
), history as (
    insert into order_status_history
        (order_id, version, from_status, to_status, reason, actor_id, actor_role, at)
    select id, version, 'PENDING', status, null, null, null, updated_at from changed
), events as (
    insert into outbox (event_id, stream, message_key, payload)
    select * from unnest(
        (array[bench_uuid_v7(), bench_uuid_v7(), bench_uuid_v7()])[1 : :nlines] || bench_uuid_v7(),
        array_fill('stock-levels'::text, array[:nlines::int]) || 'order-status'::text,
        (array[bench_sku(:k1), bench_sku(:k2), bench_sku(:k3)])[1 : :nlines] || :p_id::text,
        ((array[
            format('{"eventId":"%s","schemaVersion": 1,"sku":"%s","version":%s,"name":"Bench item %s","quantity":%s,"delta":%s,"lowStockThreshold": 10,"wasLowStock": false,"reason":"ORDER_CONFIRMED","orderId":"%s","occurredAt":"%s"}',
                   bench_uuid_v7()::text, bench_sku(:k1), 1234, :k1::int, 999998765, -:q1::int, :p_id::text, (to_json(now() at time zone 'UTC') #>> '{}') || 'Z'),
            format('{"eventId":"%s","schemaVersion": 1,"sku":"%s","version":%s,"name":"Bench item %s","quantity":%s,"delta":%s,"lowStockThreshold": 10,"wasLowStock": false,"reason":"ORDER_CONFIRMED","orderId":"%s","occurredAt":"%s"}',
                   bench_uuid_v7()::text, bench_sku(:k2), 1234, :k2::int, 999998765, -:q2::int, :p_id::text, (to_json(now() at time zone 'UTC') #>> '{}') || 'Z'),
            format('{"eventId":"%s","schemaVersion": 1,"sku":"%s","version":%s,"name":"Bench item %s","quantity":%s,"delta":%s,"lowStockThreshold": 10,"wasLowStock": false,"reason":"ORDER_CONFIRMED","orderId":"%s","occurredAt":"%s"}',
                   bench_uuid_v7()::text, bench_sku(:k3), 1234, :k3::int, 999998765, -:q3::int, :p_id::text, (to_json(now() at time zone 'UTC') #>> '{}') || 'Z')
         ])[1 : :nlines]
        || format('{"eventId":"%s","schemaVersion": 1,"orderId":"%s","version": 2,"occurredAt":"%s","type":"OrderStatusChanged","data":{"userId":"user-%s","from":"PENDING","to":"CONFIRMED","reason": null,"changedBy": null}}',
                  bench_uuid_v7()::text, :p_id::text, (to_json(now() at time zone 'UTC') #>> '{}') || 'Z', :uid::text)
        )::jsonb[])
)
select changed.*, (select count(*) from moved) as items_moved,
       case when :notify = 1 then pg_notify('oms_outbox', '')::text end as notified
  from changed;

COMMIT;
\endif
