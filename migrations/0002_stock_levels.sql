-- Live stock levels: each inventory item counts its changes, so a repeated or stale stock event
-- is recognised, and stock changes leave through the outbox on their own stream.
alter table inventory_items add column version integer not null default 1 check (version >= 1);

alter table outbox drop constraint outbox_stream_check;
alter table outbox add constraint outbox_stream_check
    check (stream in ('inventory', 'orders', 'order-status', 'stock-levels'));
