-- Customers: the user id their tokens carry, and the profile their identity provider's claims
-- give (name, email, phone_number) or that they set themselves. Personal data: it stays in
-- this table, never in events or logs.
create table customers (
    id            text primary key,
    name          text check (name is null or char_length(name) between 1 and 100),
    email         text check (email is null or char_length(email) between 3 and 254),
    phone         text check (phone is null or phone ~ '^[0-9]{10}$'),
    -- A digest of the profile claims last taken from a token. A token's claims overwrite the
    -- profile only when they differ from the last ones taken, so a customer's own edits stay
    -- until their identity provider's data changes.
    claims_digest text,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

-- One customer per email (whatever its case) and per phone; the pattern operator class also
-- serves the prefix searches of customers(filter: {search}).
create unique index customers_email_key on customers (lower(email) text_pattern_ops);
create unique index customers_phone_key on customers (phone text_pattern_ops);
create index customers_by_lower_name on customers (lower(name) text_pattern_ops);

-- Everyone who placed an order before there were customers.
insert into customers (id, created_at, updated_at)
select user_id, min(created_at), min(created_at) from orders group by user_id;
