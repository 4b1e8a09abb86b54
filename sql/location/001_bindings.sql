-- Location bindings: one row per contact of an address-of-record.
-- Lives in every partition copy's database (each database holds exactly one
-- partition).  Component "location", schema version 1.
--
-- expires and updated are absolute epoch seconds (DOUBLE); path and extra
-- are JSON arrays.  Expired rows are ignored by reads and deleted by the
-- node holding the partition's expiry lease (location_lease in the map DB).
CREATE TABLE IF NOT EXISTS location_binding (
    aor          VARCHAR(255)  NOT NULL,
    binding_key  VARCHAR(255)  NOT NULL,
    contact      VARCHAR(1024) NOT NULL,
    expires      DOUBLE        NOT NULL,
    q            DOUBLE        NOT NULL DEFAULT 1,
    call_id      VARCHAR(255)  NOT NULL DEFAULT '',
    cseq         BIGINT        NOT NULL DEFAULT 0,
    path         TEXT          NOT NULL,
    received     VARCHAR(255)  NOT NULL DEFAULT '',
    instance_id  VARCHAR(255)  NOT NULL DEFAULT '',
    reg_id       INT           NOT NULL DEFAULT 0,
    user_agent   VARCHAR(255)  NOT NULL DEFAULT '',
    socket       VARCHAR(128)  NOT NULL DEFAULT '',
    updated      DOUBLE        NOT NULL DEFAULT 0,
    flags        INT           NOT NULL DEFAULT 0,
    extra        TEXT          NOT NULL,
    PRIMARY KEY (aor, binding_key),
    KEY location_binding_expires (expires)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
