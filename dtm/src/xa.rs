//! XA (spec §6.6). The initiator, [`xa_global_transaction`], prepares, lets the closure call
//! each branch with [`Xa::call_branch`] (`op=action` plus `phase2_url`), and submits or aborts.
//! The branch service runs its local part through [`XaLocal::run`] — `XA START`, the barrier
//! row, the business, `registerBranch`, `XA END`, `XA PREPARE` on one connection — and the
//! server's phase two through [`XaLocal::phase2`] (`XA COMMIT` / `XA ROLLBACK`).
//!
//! The xid is `gid-branch_id`, sent as a hex literal (no quoting of request data) and at most
//! 64 bytes (MySQL's gtrid limit), so keep gids short.
//!
//! Why the phase-one connection is closed rather than pooled: MariaDB/MySQL keep a prepared XA
//! transaction attached to the session that prepared it; while that session lives, `XA COMMIT`
//! from another one answers "unknown XID". Closing it detaches the prepared transaction (it
//! survives, durable, for phase two). Because that detachment is not instantaneous, phase two
//! treats "unknown XID" as done only if `XA RECOVER` no longer lists the xid.
//!
//! ```no_run
//! # async fn f(dtm: seata_dtm::DtmClient) -> Result<(), seata_dtm::DtmError> {
//! let gid = dtm.new_gid().await?;
//! seata_dtm::xa_global_transaction(&dtm, gid, |xa| async move {
//!     xa.call_branch(&serde_json::json!({"user": 1, "amount": 30}), "http://account/xa").await?;
//!     Ok::<_, seata_dtm::DtmError>(())
//! })
//! .await
//! # }
//! ```

use std::fmt::{Display, Write};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use serde::Serialize;

use crate::barrier::BarrierTable;
use crate::branch::{op, BranchError, BranchParams};
use crate::client::{DtmClient, Registration, DEFAULT_CALL_TIMEOUT};
use crate::error::DtmError;
use crate::options::TransOptions;
use crate::scope::{self, Scope};

/// MySQL's limit on the gtrid of an xid.
const MAX_XID: usize = 64;
/// `ER_XAER_NOTA`: unknown XID.
const XAER_NOTA: u16 = 1397;

/// Runs `f` as one XA global transaction; `Ok` submits (the server commits every branch in
/// registration order), `Err` aborts (rolls them back).
pub async fn xa_global_transaction<T, E, F, Fut>(
    client: &DtmClient,
    gid: impl Into<String>,
    f: F,
) -> Result<T, E>
where
    F: FnOnce(Xa) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<DtmError> + Display,
{
    xa_global_transaction_with(client, gid, TransOptions::default(), f).await
}

/// [`xa_global_transaction`] with options.
pub async fn xa_global_transaction_with<T, E, F, Fut>(
    client: &DtmClient,
    gid: impl Into<String>,
    options: TransOptions,
    f: F,
) -> Result<T, E>
where
    F: FnOnce(Xa) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<DtmError> + Display,
{
    let scope = Scope::new(client, gid.into(), "xa", options);
    let xa = Xa {
        scope: scope.clone(),
    };
    scope::run(scope, xa, f).await
}

/// The running XA transaction handed to the closure; cheap to clone.
#[derive(Debug, Clone)]
pub struct Xa {
    scope: Arc<Scope>,
}

impl Xa {
    /// The gid.
    pub fn gid(&self) -> &str {
        &self.scope.gid
    }

    /// POSTs `body` to `url` with `op=action`, `phase2_url=url` (the same URL serves phase
    /// two) and `dtm`; the branch registers itself. Errors as for a TCC try.
    pub async fn call_branch(&self, body: &impl Serialize, url: &str) -> Result<Bytes, DtmError> {
        let data = serde_json::to_vec(body).map_err(|e| DtmError::invalid("XA branch body", e))?;
        self.call_branch_bytes(data, url).await
    }

    /// [`Xa::call_branch`] with a raw body; a gRPC branch URL (`host:port/pkg.Service/Method`)
    /// is called over gRPC with the parameters as `dtm-…` metadata (`dtm-phase2_url` too).
    pub async fn call_branch_bytes(
        &self,
        body: impl Into<Vec<u8>>,
        url: &str,
    ) -> Result<Bytes, DtmError> {
        let branch_id = self.scope.next_branch_id()?;
        self.scope
            .call_first_phase(
                url,
                &branch_id,
                op::ACTION,
                &[("phase2_url", url)],
                body.into(),
            )
            .await
    }
}

/// The branch side of XA on `mysql_async`: see the module docs.
#[derive(Debug, Clone)]
pub struct XaLocal {
    pool: Pool,
    table: BarrierTable,
    http: reqwest::Client,
}

impl XaLocal {
    /// XA branches on `pool`'s database, barrier rows in the default table.
    pub fn new(pool: Pool) -> Result<XaLocal, DtmError> {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_CALL_TIMEOUT)
            .build()
            .map_err(|e| DtmError::invalid("HTTP client", e))?;
        Ok(XaLocal {
            pool,
            table: BarrierTable::default(),
            http,
        })
    }

    /// Barrier rows in `table`.
    pub fn with_table(mut self, table: BarrierTable) -> XaLocal {
        self.table = table;
        self
    }

    /// Calls `registerBranch` through this HTTP client.
    pub fn with_http(mut self, http: reqwest::Client) -> XaLocal {
        self.http = http;
        self
    }

    /// Phase one (`op=action`): `XA START`, the barrier row (`xa`, gid, branch, `action`, `01`,
    /// reason `action`: a branch already rolled back by phase two collides and is refused with
    /// FAILURE), `busi`, `registerBranch` (url = `phase2_url`), `XA END`, `XA PREPARE`. Any
    /// error rolls the XA branch back and is returned.
    pub async fn run<T, F>(&self, params: &BranchParams, busi: F) -> Result<T, BranchError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T, BranchError>>,
    {
        let xid = xid(params)?;
        let (Some(dtm), Some(phase2_url)) = (&params.dtm, &params.phase2_url) else {
            return Err(BranchError::failure(
                "an XA branch call needs the `dtm` and `phase2_url` parameters (Xa::call_branch \
                 sends them)",
            ));
        };
        let client = DtmClient::with_http(dtm.as_str(), self.http.clone())?;
        let mut conn = self.pool.get_conn().await?;
        let result = self
            .phase_one(&mut conn, &client, params, phase2_url, &xid, busi)
            .await;
        if let Err(e) = &result {
            // END may fail if START did; ROLLBACK then has nothing to do. Closing the session
            // rolls back whatever is left unprepared anyway.
            let _ = conn.query_drop(format!("XA END {xid}")).await;
            let _ = conn.query_drop(format!("XA ROLLBACK {xid}")).await;
            tracing::debug!(gid = %params.gid, branch_id = %params.branch_id, error = %e,
                "xa phase one rolled back");
        }
        // Detach the prepared transaction from this session (module docs).
        if let Err(e) = conn.disconnect().await {
            tracing::warn!(error = %e, "xa: closing the phase-one connection failed");
        }
        result
    }

    async fn phase_one<T, F>(
        &self,
        conn: &mut Conn,
        client: &DtmClient,
        params: &BranchParams,
        phase2_url: &str,
        xid: &str,
        busi: F,
    ) -> Result<T, BranchError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T, BranchError>>,
    {
        conn.query_drop(format!("XA START {xid}")).await?;
        if insert_action_row(conn, &self.table, params, op::ACTION).await? == 0 {
            return Err(BranchError::failure(format!(
                "xa branch {}-{} was already rolled back (or ran before)",
                params.gid, params.branch_id
            )));
        }
        let value = busi(conn).await?;
        let register = Registration {
            gid: &params.gid,
            trans_type: "xa",
            branch_id: &params.branch_id,
            op: op::ACTION,
            urls: &[("url", phase2_url)],
            payload: None,
        };
        client.register_branch(&register).await?;
        conn.query_drop(format!("XA END {xid}")).await?;
        conn.query_drop(format!("XA PREPARE {xid}")).await?;
        Ok(value)
    }

    /// Phase two (`op=commit` or `op=rollback`): `XA COMMIT`/`XA ROLLBACK` of the branch; an
    /// xid the database does not know (and no longer lists as prepared) was already finished.
    /// After a rollback the barrier row (reason `rollback`) makes a late phase one collide.
    pub async fn phase2(&self, params: &BranchParams) -> Result<(), BranchError> {
        let xid = xid(params)?;
        let verb = match params.op.as_str() {
            op::COMMIT => "COMMIT",
            op::ROLLBACK => "ROLLBACK",
            other => {
                return Err(BranchError::internal(format!(
                    "xa phase two with op {other:?}: expected commit or rollback"
                )))
            }
        };
        let mut conn = self.pool.get_conn().await?;
        match conn.query_drop(format!("XA {verb} {xid}")).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(e)) if e.code == XAER_NOTA => {
                if still_prepared(&mut conn, params).await? {
                    return Err(BranchError::internal(format!(
                        "xa branch {}-{} is prepared but still attached to its phase-one \
                         session; retry",
                        params.gid, params.branch_id
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
        if verb == "ROLLBACK" {
            insert_action_row(&mut conn, &self.table, params, op::ROLLBACK).await?;
        }
        Ok(())
    }
}

/// `X'<hex of gid-branch_id>'`.
fn xid(params: &BranchParams) -> Result<String, BranchError> {
    let raw = format!("{}-{}", params.gid, params.branch_id);
    if raw.len() > MAX_XID {
        return Err(BranchError::failure(format!(
            "xid {raw:?} is longer than {MAX_XID} bytes (MySQL's limit): use shorter gids"
        )));
    }
    Ok(hex_literal(raw.as_bytes()))
}

fn hex_literal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\'');
    out
}

/// Whether `XA RECOVER` lists this branch's xid.
async fn still_prepared(conn: &mut Conn, params: &BranchParams) -> Result<bool, BranchError> {
    let want = format!("{}-{}", params.gid, params.branch_id).into_bytes();
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = conn.query("XA RECOVER").await?;
    Ok(rows.iter().any(|(_, gtrid_len, _, data)| {
        usize::try_from(*gtrid_len).ok() == Some(want.len()) && data.starts_with(&want)
    }))
}

/// The XA barrier row (`xa`, gid, branch, `action`, `01`, `reason`); rows inserted.
async fn insert_action_row(
    conn: &mut Conn,
    table: &BarrierTable,
    p: &BranchParams,
    reason: &str,
) -> Result<u64, BranchError> {
    let sql = format!(
        "INSERT IGNORE INTO {} (trans_type, gid, branch_id, op, barrier_id, reason) \
         VALUES ('xa', ?, ?, ?, '01', ?)",
        table.quoted()
    );
    conn.exec_drop(sql, (&p.gid, &p.branch_id, op::ACTION, reason))
        .await?;
    Ok(conn.affected_rows())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_are_hex_literals_and_bounded() {
        let mut p = BranchParams {
            gid: "g'1".into(),
            trans_type: "xa".into(),
            branch_id: "01".into(),
            op: "action".into(),
            dtm: None,
            phase2_url: None,
        };
        assert_eq!(xid(&p).unwrap(), "X'6727312d3031'");
        p.gid = "x".repeat(70);
        assert!(xid(&p).unwrap_err().is_failure());
    }
}
