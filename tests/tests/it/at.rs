//! AT mode end to end: real seata-tc, real MariaDB.
