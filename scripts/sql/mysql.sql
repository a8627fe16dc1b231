-- Tables of the seata-rs TC db store (`seata-tc --store db`), for MySQL 5.7+ / MariaDB 10.3+.
-- global_table, branch_table and lock_table are Seata 1.2's, unchanged, so existing
-- operational queries keep working. seata_rs_tc_node (server node numbers leased by running
-- TCs) and seata_rs_tx_lease (which TC drives a transaction's phase two) are seata-rs's own.
-- `seata-tc --init-db` runs the same statements.

CREATE TABLE IF NOT EXISTS `global_table` (
  `xid` VARCHAR(128) NOT NULL,
  `transaction_id` BIGINT,
  `status` TINYINT NOT NULL,
  `application_id` VARCHAR(32),
  `transaction_service_group` VARCHAR(32),
  `transaction_name` VARCHAR(128),
  `timeout` INT,
  `begin_time` BIGINT,
  `application_data` VARCHAR(2000),
  `gmt_create` DATETIME,
  `gmt_modified` DATETIME,
  PRIMARY KEY (`xid`),
  KEY `idx_gmt_modified_status` (`gmt_modified`, `status`),
  KEY `idx_transaction_id` (`transaction_id`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8;

CREATE TABLE IF NOT EXISTS `branch_table` (
  `branch_id` BIGINT NOT NULL,
  `xid` VARCHAR(128) NOT NULL,
  `transaction_id` BIGINT,
  `resource_group_id` VARCHAR(32),
  `resource_id` VARCHAR(256),
  `branch_type` VARCHAR(8),
  `status` TINYINT,
  `client_id` VARCHAR(64),
  `application_data` VARCHAR(2000),
  `gmt_create` DATETIME(6),
  `gmt_modified` DATETIME(6),
  PRIMARY KEY (`branch_id`),
  KEY `idx_xid` (`xid`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8;

CREATE TABLE IF NOT EXISTS `lock_table` (
  `row_key` VARCHAR(128) NOT NULL,
  `xid` VARCHAR(96),
  `transaction_id` BIGINT,
  `branch_id` BIGINT NOT NULL,
  `resource_id` VARCHAR(256),
  `table_name` VARCHAR(32),
  `pk` VARCHAR(36),
  `gmt_create` DATETIME,
  `gmt_modified` DATETIME,
  PRIMARY KEY (`row_key`),
  KEY `idx_branch_id` (`branch_id`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8;

CREATE TABLE IF NOT EXISTS `seata_rs_tc_node` (
  `node` SMALLINT NOT NULL,
  `owner` BIGINT NOT NULL,
  `expires_at` BIGINT NOT NULL,
  PRIMARY KEY (`node`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8;

CREATE TABLE IF NOT EXISTS `seata_rs_tx_lease` (
  `xid` VARCHAR(128) NOT NULL,
  `transaction_id` BIGINT NOT NULL,
  `owner` BIGINT NOT NULL,
  `expires_at` BIGINT NOT NULL,
  PRIMARY KEY (`xid`),
  KEY `idx_owner` (`owner`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8;

-- trans_global and trans_branch_op hold DTM-mode transactions (saga, msg, tcc, xa over DTM's
-- HTTP API) with DTM's table and column names. Where the types differ from DTM's script:
-- - times are BIGINT ms since the Unix epoch (0 = not set), as the TC keeps them: exact to the
--   ms, independent of the session time zone, and the unit of the lease columns above.
-- - gid and branch_id are VARBINARY, compared byte for byte: under a text collation "Ab" and
--   "ab" (or "a" and "a ") would be one transaction. 512 bytes hold 128 characters.
-- - owner is the BIGINT token of seata_rs_tc_node (0 = none), the lease of the TC that drives
--   the transaction, so the lease check compares integers.
-- - bodies and free text are MEDIUMBLOB/MEDIUMTEXT (up to 16 MB), so a long payload or error
--   text is stored whole rather than refused or cut.
-- - retry_count (branch calls that came back not done) is seata-rs's own.
-- idx_status_finish_time serves the purge of finished transactions.
CREATE TABLE IF NOT EXISTS `trans_global` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `gid` VARBINARY(512) NOT NULL,
  `trans_type` VARCHAR(45) CHARACTER SET ascii NOT NULL,
  `status` VARCHAR(12) CHARACTER SET ascii NOT NULL,
  `query_prepared` VARCHAR(1024),
  `protocol` VARCHAR(45),
  `create_time` BIGINT NOT NULL DEFAULT 0,
  `update_time` BIGINT NOT NULL DEFAULT 0,
  `finish_time` BIGINT NOT NULL DEFAULT 0,
  `rollback_time` BIGINT NOT NULL DEFAULT 0,
  `options` TEXT,
  `custom_data` MEDIUMTEXT,
  `next_cron_interval` BIGINT NOT NULL DEFAULT 0,
  `next_cron_time` BIGINT NOT NULL DEFAULT 0,
  `owner` BIGINT NOT NULL DEFAULT 0,
  `ext_data` MEDIUMTEXT,
  `result` MEDIUMTEXT,
  `rollback_reason` MEDIUMTEXT,
  `retry_count` BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_gid` (`gid`),
  KEY `idx_status_next_cron_time` (`status`, `next_cron_time`),
  KEY `idx_status_finish_time` (`status`, `finish_time`),
  KEY `idx_owner` (`owner`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 ROW_FORMAT = DYNAMIC;

CREATE TABLE IF NOT EXISTS `trans_branch_op` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `gid` VARBINARY(512) NOT NULL,
  `url` VARCHAR(1024),
  `bin_data` MEDIUMBLOB,
  `branch_id` VARBINARY(512) NOT NULL,
  `op` VARCHAR(45) CHARACTER SET ascii NOT NULL,
  `status` VARCHAR(45) CHARACTER SET ascii NOT NULL,
  `create_time` BIGINT NOT NULL DEFAULT 0,
  `update_time` BIGINT NOT NULL DEFAULT 0,
  `finish_time` BIGINT NOT NULL DEFAULT 0,
  `rollback_time` BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_gid_branch_op` (`gid`, `branch_id`, `op`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 ROW_FORMAT = DYNAMIC;

-- seata-rs: audit records of the admin API (an operator gave a branch up, deleted a kept
-- failure, resumed a rollback) and RMs' unretryable phase-two reports. Append-only.
CREATE TABLE IF NOT EXISTS `seata_rs_audit` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `at_ms` BIGINT NOT NULL,
  `actor` VARCHAR(128) NOT NULL,
  `action` VARCHAR(32) CHARACTER SET ascii NOT NULL,
  `xid` VARCHAR(512) NOT NULL,
  `branch_id` BIGINT,
  `reason` MEDIUMTEXT NOT NULL,
  `status` VARCHAR(45) CHARACTER SET ascii NOT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_xid` (`xid`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 ROW_FORMAT = DYNAMIC;
