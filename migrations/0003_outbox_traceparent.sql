-- The W3C traceparent of the span that wrote an event (null when traces are off), so the relay
-- can carry the trace across Kafka in the message's headers.
alter table outbox add column traceparent text
    check (traceparent is null or char_length(traceparent) <= 128);
