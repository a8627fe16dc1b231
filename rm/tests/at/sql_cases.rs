//! The AT SQL support matrix as data: each case is a schema, the statements an application
//! sends inside a global transaction, and what AT mode does with them. `sql_support.rs` runs
//! every case against MariaDB and renders `docs/at-sql-support.md` from this same table, so
//! the document says only what the tests show.

/// What AT mode does with a case's statements.
pub enum Expect {
    /// They run; commit keeps what MySQL did and rollback restores the tables exactly. The
    /// string lists the undo items the branch writes, in order (`INSERT`, `UPDATE`, `DELETE`,
    /// the only `sqlType`s Seata 1.2 knows), or is empty when nothing is imaged.
    Supported(&'static str),
    /// Refused before any data changes, with an error containing this text.
    Refused(&'static str),
}

/// One row of the matrix.
pub struct Case {
    /// The construct, as the document's first column names it.
    pub construct: &'static str,
    /// Tables and rows before the global transaction.
    pub setup: &'static [&'static str],
    /// The statements, in order, each sent with `query_drop` inside the global transaction.
    pub statements: &'static [&'static str],
    /// Tables whose contents are compared.
    pub tables: &'static [&'static str],
    pub expect: Expect,
    /// How AT mode handles it (why, for a refusal).
    pub how: &'static str,
    /// What Seata 1.2 does with the same statement.
    pub seata_1_2: &'static str,
}

const ACCOUNT: &str = "CREATE TABLE account (id INT PRIMARY KEY, owner VARCHAR(16) NOT NULL, \
     balance INT NOT NULL, UNIQUE KEY ux_owner (owner))";
const ACCOUNT_ROWS: &str = "INSERT INTO account VALUES (1, 'a', 100), (2, 'b', 200), (3, 'c', 300)";
const STOCK: &str = "CREATE TABLE stock (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
     sku VARCHAR(16) NOT NULL, qty INT NOT NULL, UNIQUE KEY ux_sku (sku))";
const STOCK_ROWS: &str = "INSERT INTO stock (sku, qty) VALUES ('apple', 5), ('pear', 7)";
const ITEMS: &str =
    "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(16), qty INT)";
const PAIRS: &str = "CREATE TABLE pairs (a INT, b VARCHAR(8), v INT, PRIMARY KEY (a, b))";
const ORDERS: &str = "CREATE TABLE orders (id INT PRIMARY KEY, account_id INT NOT NULL, \
     amount INT NOT NULL, state VARCHAR(8) NOT NULL)";
const ORDER_ROWS: &str = "INSERT INTO orders VALUES (10, 1, 30, 'new'), (11, 2, 40, 'new'), \
     (12, 1, 50, 'paid')";
const NOKEY: &str = "CREATE TABLE nokey (v INT)";

/// Every case, in document order.
pub const CASES: &[Case] = &[
    Case {
        construct: "INSERT, one row, explicit key",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["INSERT INTO account (id, owner, balance) VALUES (4, 'd', 400)"],
        tables: &["account"],
        expect: Expect::Supported("INSERT"),
        how: "after image read by the key from VALUES",
        seata_1_2: "same",
    },
    Case {
        construct: "multi-row INSERT, explicit keys",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["INSERT INTO account VALUES (4, 'd', 400), (5, 'e', 500), (6, 'f', 600)"],
        tables: &["account"],
        expect: Expect::Supported("INSERT"),
        how: "every row's key from VALUES",
        seata_1_2: "same",
    },
    Case {
        construct: "multi-row INSERT, AUTO_INCREMENT keys",
        setup: &[ITEMS, "INSERT INTO items (name, qty) VALUES ('x', 1)"],
        statements: &["INSERT INTO items (name, qty) VALUES ('a', 1), ('b', 2), ('c', 3)"],
        tables: &["items"],
        expect: Expect::Supported("INSERT"),
        how: "keys are LAST_INSERT_ID() + i × @@auto_increment_increment; the after image must find exactly the inserted rows",
        seata_1_2: "images only the first row (LAST_INSERT_ID()): the others get no lock and are not undone",
    },
    Case {
        construct: "multi-row INSERT, composite key",
        setup: &[PAIRS, "INSERT INTO pairs VALUES (1, 'x', 1)"],
        statements: &["INSERT INTO pairs VALUES (1, 'y', 2), (2, 'x', 3)"],
        tables: &["pairs"],
        expect: Expect::Supported("INSERT"),
        how: "lock keys join a row's key values with `_` (`pairs:1_y,2_x`), as Seata 1.4+",
        seata_1_2: "refused: \"contains multi PK, but current not support\"",
    },
    Case {
        construct: "multi-row INSERT mixing explicit and generated keys",
        setup: &[ITEMS],
        statements: &["INSERT INTO items (id, name, qty) VALUES (100, 'a', 1), (NULL, 'b', 2)"],
        tables: &["items"],
        expect: Expect::Refused("mixing explicit and generated AUTO_INCREMENT keys"),
        how: "LAST_INSERT_ID() numbers only the generated rows, and an explicit key moves the counter, so the generated keys cannot be known",
        seata_1_2: "not supported (\"not support sql\")",
    },
    Case {
        construct: "INSERT with a key from an expression",
        setup: &[ACCOUNT],
        statements: &["INSERT INTO account VALUES (FLOOR(RAND() * 1000), 'z', 1)"],
        tables: &["account"],
        expect: Expect::Refused("from expression"),
        how: "the key an expression yields is known only to the server; pass the value",
        seata_1_2: "refused (`NotSupportYetException`)",
    },
    Case {
        construct: "INSERT ... SELECT",
        setup: &[ACCOUNT, ACCOUNT_ROWS, ITEMS],
        statements: &["INSERT INTO items (name, qty) SELECT owner, balance FROM account"],
        tables: &["items"],
        expect: Expect::Refused("INSERT ... SELECT"),
        how: "the inserted rows are known only after it runs, and with generated keys they cannot be read back exactly; select first, then INSERT ... VALUES",
        seata_1_2: "fails (no VALUES rows)",
    },
    Case {
        construct: "INSERT ... ON DUPLICATE KEY UPDATE, key collision",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["INSERT INTO account VALUES (1, 'a', 150), (4, 'd', 400) \
             ON DUPLICATE KEY UPDATE balance = VALUES(balance)"],
        tables: &["account"],
        expect: Expect::Supported("UPDATE, INSERT"),
        how: "before image: every row sharing a primary or unique key value with a VALUES row, locked; after image: the same rows; updated rows become an UPDATE item, new rows an INSERT item; MySQL's affected-row count must match the images",
        seata_1_2: "treated as a plain INSERT: rollback deletes the updated row (data loss)",
    },
    Case {
        construct: "INSERT ... ON DUPLICATE KEY UPDATE by unique key, generated primary key",
        setup: &[STOCK, STOCK_ROWS],
        statements: &["INSERT INTO stock (sku, qty) VALUES ('apple', 1), ('plum', 3) \
             ON DUPLICATE KEY UPDATE qty = qty + VALUES(qty)"],
        tables: &["stock"],
        expect: Expect::Supported("UPDATE, INSERT"),
        how: "rows found again by their unique key values",
        seata_1_2: "treated as a plain INSERT (LAST_INSERT_ID()): wrong row imaged",
    },
    Case {
        construct: "INSERT ... ON DUPLICATE KEY UPDATE with no unique value to find the row by",
        setup: &[ITEMS],
        statements: &["INSERT INTO items (name, qty) VALUES ('a', 1) ON DUPLICATE KEY UPDATE qty = 2"],
        tables: &["items"],
        expect: Expect::Refused("generated key and no unique key value"),
        how: "the row it writes could not be found again",
        seata_1_2: "treated as a plain INSERT",
    },
    Case {
        construct: "INSERT IGNORE",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["INSERT IGNORE INTO account VALUES (1, 'x', 1), (4, 'd', 400), (5, 'a', 5)"],
        tables: &["account"],
        expect: Expect::Supported("INSERT"),
        how: "as ON DUPLICATE KEY UPDATE: only rows absent from the before image are undone; skipped rows are left alone",
        seata_1_2: "treated as a plain INSERT: rollback deletes the rows it skipped",
    },
    Case {
        construct: "REPLACE, same primary key",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["REPLACE INTO account VALUES (2, 'b', 250), (4, 'd', 400)"],
        tables: &["account"],
        expect: Expect::Supported("UPDATE, INSERT"),
        how: "a row replaced in place is an UPDATE item with whole rows",
        seata_1_2: "not recognized as DML: runs without image or lock",
    },
    Case {
        construct: "REPLACE colliding on a unique key",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["REPLACE INTO account VALUES (7, 'c', 700)"],
        tables: &["account"],
        expect: Expect::Supported("DELETE, INSERT"),
        how: "the deleted row is a DELETE item, undone after the new row's INSERT item",
        seata_1_2: "not recognized as DML: runs without image or lock",
    },
    Case {
        construct: "UPDATE, several rows",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["UPDATE account SET balance = balance - 10 WHERE balance >= 200"],
        tables: &["account"],
        expect: Expect::Supported("UPDATE"),
        how: "before image `SELECT pk, set columns ... FOR UPDATE`, after image by key",
        seata_1_2: "same",
    },
    Case {
        construct: "UPDATE of a primary key column",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["UPDATE account SET id = 9 WHERE id = 1"],
        tables: &["account"],
        expect: Expect::Refused("UPDATE of primary key column"),
        how: "the after image could not be read by the before image's keys; delete and insert instead",
        seata_1_2: "runs; the after image misses the row and rollback cannot restore it",
    },
    Case {
        construct: "UPDATE ... JOIN, two tables written",
        setup: &[ACCOUNT, ACCOUNT_ROWS, ORDERS, ORDER_ROWS],
        statements: &["UPDATE account a JOIN orders o ON o.account_id = a.id \
             SET a.balance = a.balance - o.amount, o.state = 'paid' WHERE o.state = 'new'"],
        tables: &["account", "orders"],
        expect: Expect::Supported("UPDATE, UPDATE"),
        how: "one image per written table through the statement's own FROM and WHERE (rows once per key), after images by key; one UPDATE item per table",
        seata_1_2: "refused by the MySQL recognizer (joins are not supported)",
    },
    Case {
        construct: "UPDATE ... JOIN, unqualified SET column",
        setup: &[ACCOUNT, ACCOUNT_ROWS, ORDERS, ORDER_ROWS],
        statements: &["UPDATE orders JOIN account ON account.id = orders.account_id \
             SET state = 'held' WHERE account.owner = 'a'"],
        tables: &["account", "orders"],
        expect: Expect::Supported("UPDATE"),
        how: "an unqualified column belongs to the one table that has it (ambiguous ones are refused)",
        seata_1_2: "refused (joins are not supported)",
    },
    Case {
        construct: "multi-table UPDATE with comma-separated tables",
        setup: &[ACCOUNT, ACCOUNT_ROWS, ORDERS, ORDER_ROWS],
        statements: &["UPDATE account, orders SET orders.state = 'x' WHERE orders.account_id = account.id"],
        tables: &["account", "orders"],
        expect: Expect::Refused("comma-separated tables"),
        how: "the SQL parser reads only the JOIN form; write `UPDATE a JOIN b ON ... SET ...`",
        seata_1_2: "refused",
    },
    Case {
        construct: "DELETE, several rows",
        setup: &[ORDERS, ORDER_ROWS],
        statements: &["DELETE FROM orders WHERE account_id = 1"],
        tables: &["orders"],
        expect: Expect::Supported("DELETE"),
        how: "before image of whole rows, locked",
        seata_1_2: "same",
    },
    Case {
        construct: "multi-table DELETE (`DELETE a, b FROM a JOIN b`)",
        setup: &[ACCOUNT, ACCOUNT_ROWS, ORDERS, ORDER_ROWS],
        statements: &["DELETE a, o FROM account a JOIN orders o ON o.account_id = a.id WHERE a.owner = 'b'"],
        tables: &["account", "orders"],
        expect: Expect::Supported("DELETE, DELETE"),
        how: "one whole-row before image per deleted table through the statement's FROM and WHERE",
        seata_1_2: "refused (multi-table DELETE is not supported)",
    },
    Case {
        construct: "multi-table DELETE (`DELETE FROM a USING a JOIN b`)",
        setup: &[ACCOUNT, ACCOUNT_ROWS, ORDERS, ORDER_ROWS],
        statements: &["DELETE FROM orders USING orders JOIN account ON account.id = orders.account_id \
             WHERE account.owner = 'a'"],
        tables: &["account", "orders"],
        expect: Expect::Supported("DELETE"),
        how: "as above; only the tables before USING lose rows",
        seata_1_2: "refused",
    },
    Case {
        construct: "several statements in one string",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["UPDATE account SET balance = balance + 1 WHERE id = 1; \
             INSERT INTO account VALUES (4, 'd', 400); DELETE FROM account WHERE id = 3"],
        tables: &["account"],
        expect: Expect::Supported("UPDATE, INSERT, DELETE"),
        how: "each statement imaged on its own, all in one local transaction and one branch (not re-run after a lock conflict)",
        seata_1_2: "only all-UPDATE or all-DELETE lists; mixed kinds are refused",
    },
    Case {
        construct: "ROLLBACK TO SAVEPOINT in a local transaction",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &[
            "START TRANSACTION",
            "UPDATE account SET balance = 1 WHERE id = 1",
            "SAVEPOINT s1",
            "UPDATE account SET balance = 2 WHERE id = 2",
            "INSERT INTO account VALUES (4, 'd', 400)",
            "ROLLBACK TO SAVEPOINT s1",
            "COMMIT",
        ],
        tables: &["account"],
        expect: Expect::Supported("UPDATE"),
        how: "the undo items and lock keys of statements after the savepoint are dropped",
        seata_1_2: "savepoints pass through: the undo log keeps the rolled-back statements (their rows are locked and rollback's check skips them)",
    },
    Case {
        construct: "SELECT ... FOR UPDATE",
        setup: &[ACCOUNT, ACCOUNT_ROWS],
        statements: &["SELECT * FROM account WHERE id = 1 FOR UPDATE"],
        tables: &["account"],
        expect: Expect::Supported(""),
        how: "asks the TC whether another global transaction holds the rows; writes nothing",
        seata_1_2: "same",
    },
    Case {
        construct: "a table without a primary key",
        setup: &[NOKEY, "INSERT INTO nokey VALUES (1)"],
        statements: &["UPDATE nokey SET v = 2"],
        tables: &["nokey"],
        expect: Expect::Refused("primary key"),
        how: "rows could not be found again by key",
        seata_1_2: "refused (\"needs to contain the primary key\")",
    },
];
