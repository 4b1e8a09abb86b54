-- voipgw subscribers schema, version 1 (MySQL / MariaDB).
--
-- Applied by `voipgw-admin db init --component subscribers`; the same table is
-- defined with SQLAlchemy in voipgw/subscribers/schema.py for SQLite.  Keep
-- both in step: tests/test_subscribers_schema.py compares them.
--
-- Usernames and domains are stored normalised to lower case by the
-- application, so the binary collation gives exact, case-insensitive matching
-- without accent folding ('muller' and 'müller' stay distinct).
-- Only digest HA1 values are stored, never the password.

CREATE TABLE IF NOT EXISTS subscriber (
    id BIGINT NOT NULL AUTO_INCREMENT,
    username VARCHAR(64) NOT NULL,
    domain VARCHAR(190) NOT NULL,
    ha1 CHAR(32) NOT NULL,
    ha1_sha256 CHAR(64) NOT NULL,
    enabled BOOL NOT NULL DEFAULT 1,
    caller_id VARCHAR(128) NOT NULL DEFAULT '',
    max_contacts INTEGER NOT NULL DEFAULT 0,
    created DATETIME NOT NULL,
    updated DATETIME NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY subscriber_username_domain (username, domain),
    KEY subscriber_domain_username (domain, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
