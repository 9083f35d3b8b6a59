-- oms schema: inventory, orders with their lines and status history, the stock ledger,
-- the transactional outbox and the consumers' inbox.

create table inventory_items (
    id                  bigint generated always as identity primary key,
    sku                 text not null unique check (char_length(sku) between 1 and 64),
    name                text not null check (char_length(name) between 1 and 200),
    quantity            integer not null check (quantity >= 0),
    low_stock_threshold integer not null default 0 check (low_stock_threshold >= 0),
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);

create table orders (
    id               uuid primary key,
    user_id          text not null,
    status           text not null check (status in ('PENDING', 'CONFIRMED', 'REJECTED', 'RECEIVED',
                                                     'OUT_FOR_DELIVERY', 'DELIVERED', 'CANCELLED')),
    rejection_reason text,
    -- Counts the order's status changes: 1 when placed.
    version          integer not null check (version >= 1),
    -- True while the order's lines are deducted from stock; flipped under the order's row lock,
    -- so stock is deducted once and restored once.
    stock_deducted   boolean not null default false,
    idempotency_key  text,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint orders_user_idempotency_key unique (user_id, idempotency_key)
);
-- Ids are UUIDv7 (time-ordered), so `id desc` lists newest first.
create index orders_by_user on orders (user_id, id desc);
create index orders_by_status on orders (status, id desc);

create table order_lines (
    order_id uuid not null references orders (id) on delete cascade,
    line_no  integer not null,
    sku      text not null references inventory_items (sku),
    quantity integer not null check (quantity > 0),
    primary key (order_id, line_no)
);

create table order_status_history (
    order_id    uuid not null references orders (id) on delete cascade,
    version     integer not null check (version >= 1),
    from_status text,
    to_status   text not null,
    reason      text,
    actor_id    text,
    actor_role  text,
    at          timestamptz not null default now(),
    primary key (order_id, version)
);

-- The stock ledger: every movement of stock, so conservation can be audited per SKU.
create table stock_movements (
    id       bigint generated always as identity primary key,
    sku      text not null references inventory_items (sku),
    order_id uuid references orders (id),
    delta    integer not null,
    reason   text not null check (reason in ('stock_set', 'order_confirmed', 'order_cancelled')),
    at       timestamptz not null default now()
);
-- An order deducts a SKU at most once and restores it at most once.
create unique index stock_movements_once_per_order
    on stock_movements (order_id, sku, reason) where order_id is not null;

-- Events waiting for Kafka, written in the same transaction as the change they announce.
create table outbox (
    id          bigint generated always as identity primary key,
    event_id    uuid not null unique,
    stream      text not null check (stream in ('inventory', 'orders', 'order-status')),
    message_key text not null,
    payload     jsonb not null,
    created_at  timestamptz not null default now()
);

-- Events a consumer has applied, marked in the same transaction as the effect.
create table processed_events (
    consumer     text not null,
    event_id     uuid not null,
    processed_at timestamptz not null default now(),
    primary key (consumer, event_id)
);
