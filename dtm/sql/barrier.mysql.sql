-- The sub-transaction barrier table of DTM (shared/spec/dtm-http-api.md §8.1), for MySQL and
-- MariaDB. One per branch service database (or one shared `dtm_barrier` database per server).
-- The barrier inserts first and relies on the unique key (gid, branch_id, op, barrier_id), so it
-- takes no gap locks under REPEATABLE READ. Clean old rows by create_time
-- (BranchBarrier cleanup in seata-dtm); DTM itself never deletes them.
create database if not exists dtm_barrier
/*!40100 DEFAULT CHARACTER SET utf8mb4 */;

create table if not exists dtm_barrier.barrier(
  id bigint(22) PRIMARY KEY AUTO_INCREMENT,
  trans_type varchar(45) default '',
  gid varchar(128) default '',
  branch_id varchar(128) default '',
  op varchar(45) default '',
  barrier_id varchar(45) default '',
  reason varchar(45) default '' comment 'the branch type who insert this record',
  create_time datetime DEFAULT now(),
  update_time datetime DEFAULT now(),
  key(create_time),
  key(update_time),
  UNIQUE key(gid, branch_id, op, barrier_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
