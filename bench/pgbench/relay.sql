-- pgbench script: the outbox relay's database work (src/outbox/mod.rs Relay::run_once with
-- src/db/outbox.rs), run by run.sh as ONE extra pgbench client next to place_and_confirm.sql,
-- as oms runs one active relay. Each pgbench transaction of this script is one relay round:
--
--   BEGIN
--   select pg_try_advisory_xact_lock(<"oms_rela">)               try_lock_relay
--   select id, stream, message_key, payload::text from outbox
--     order by id limit :batch                                    oldest (rows come to pgbench)
--   (oms sends the batch to Kafka and waits for the acks here: \sleep :ack_ms ms)
--   delete from outbox where id <= <last id of the batch>         delete (oms: id = any($1))
--   COMMIT
--
-- It also LISTENs on oms_outbox, as the relay's listener connection does, so the server queues
-- and delivers the NOTIFYs of place_and_confirm.sql to a listener as in oms. oms then waits for
-- a notification (or 1 s) when a batch was not full; under load a notification is always
-- pending, so this script simply runs the next round after :ack_ms.
--
-- Deleting "id <= last id" instead of "id = any(the batch's ids)": pgbench keeps only the last
-- row of a result (\aset). Both are one index range over the same rows; the only difference is
-- that a row with a smaller id committed between the select and the delete goes too, which
-- changes nothing for the measurement.
--
-- Variables (-D): batch (oms's OMS_OUTBOX_BATCH, 500), ack_ms (stand-in for Kafka's ack, 2).

LISTEN oms_outbox;

BEGIN;
select pg_try_advisory_xact_lock(8029200564449799265) as locked \gset
\set id 0
\if :locked
select id, stream, message_key, payload::text as payload
  from outbox order by id limit :batch \aset
\sleep :ack_ms ms
delete from outbox where id <= :id;
\endif
COMMIT;
