-- The consumers' inbox is pruned of entries older than the topics keep messages (see
-- src/consumers/inbox.rs). Entries are written in time order, so a BRIN index finds the old ones
-- for almost nothing per insert.
create index processed_events_by_time on processed_events using brin (processed_at);
