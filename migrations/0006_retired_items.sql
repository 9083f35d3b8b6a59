-- Retiring an inventory item (`retireInventoryItem`): it stays in every order, ledger row and
-- history entry that names it, but no new order line may name it. `upsertInventoryItem` brings
-- it back (retired_at null again).
alter table inventory_items add column retired_at timestamptz;

-- Refuses an order line naming a retired item, as a check violation of the constraint
-- order_lines_sku_retired (placing maps it to the userError ITEM_RETIRED).
create function order_lines_refuse_retired_items() returns trigger language plpgsql as $$
begin
    if exists (select 1 from inventory_items where sku = new.sku and retired_at is not null) then
        raise exception 'inventory item % is retired', new.sku
            using errcode = 'check_violation', constraint = 'order_lines_sku_retired';
    end if;
    return new;
end
$$;

create trigger order_lines_refuse_retired_items before insert on order_lines
    for each row execute function order_lines_refuse_retired_items();
