-- purge_expired: find expired key/value entries without a scan.
CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
