-- cdrs_received_id_idx (received_at, id), added for replay paging, answers every query the
-- single-column cdrs_received_at_idx did; keeping both cost every CDR insert one more index.
DROP INDEX cdrs_received_at_idx;
