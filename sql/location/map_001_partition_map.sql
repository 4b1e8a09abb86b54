-- The shared partition map of the location store (component "location_map",
-- schema version 1).  Lives in one "map" database all nodes and
-- voipgw-admin read; nodes reload it every reload_interval seconds.
--
-- One row per database: a copy of a partition (partition_no, copy_no) or a
-- spare (spare = 1, partition_no NULL).  status: on | syncing | off |
-- maintenance.  A node that takes a copy out writes status = 'off' and
-- failover_time; resyncs are claimed with sync_owner / sync_started.
CREATE TABLE IF NOT EXISTS location_partition_map (
    url           VARCHAR(255) NOT NULL,
    partition_no  INT          NULL,
    copy_no       INT          NOT NULL DEFAULT 0,
    status        VARCHAR(16)  NOT NULL DEFAULT 'on',
    error_count   INT          NOT NULL DEFAULT 0,
    failover_time DOUBLE       NOT NULL DEFAULT 0,
    spare         TINYINT      NOT NULL DEFAULT 0,
    risk_group    VARCHAR(64)  NOT NULL DEFAULT '',
    sync_owner    VARCHAR(128) NOT NULL DEFAULT '',
    sync_started  DOUBLE       NOT NULL DEFAULT 0,
    changed_by    VARCHAR(128) NOT NULL DEFAULT '',
    changed       DOUBLE       NOT NULL DEFAULT 0,
    PRIMARY KEY (url),
    UNIQUE KEY location_partition_copy (partition_no, copy_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- name = 'partitions': the number of partitions AORs are hashed over.
CREATE TABLE IF NOT EXISTS location_settings (
    name   VARCHAR(64)  NOT NULL,
    value  VARCHAR(255) NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Expiry lease: the node named in owner deletes the partition's expired rows
-- until the lease expires (epoch seconds); others skip it.
CREATE TABLE IF NOT EXISTS location_lease (
    partition_no  INT          NOT NULL,
    owner         VARCHAR(128) NOT NULL,
    expires       DOUBLE       NOT NULL,
    PRIMARY KEY (partition_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
