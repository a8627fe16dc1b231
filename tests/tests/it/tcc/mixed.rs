//! One global transaction with an AT branch (a row insert through the AT proxy) and a TCC
//! branch (the fenced [`Freeze`](super::Freeze)) commits and rolls back as a whole.

use seata_rm::at::AtConfig;
use seata_tm::TxError;
use serde_json::json;

use super::{Env, TX_TIMEOUT};

const LEDGER_DDL: &str = "CREATE TABLE ledger (id BIGINT PRIMARY KEY, amount BIGINT NOT NULL)";

async fn run(commit: bool) {
    let env = Env::start(if commit { "tcc_mixed_c" } else { "tcc_mixed_r" }).await;
    env.db.run(LEDGER_DDL).await;
    let at = env.rm.at(AtConfig::default()).expect("AT manager");
    let ds = env
        .rm
        .at_data_source(&at, env.db.opts(4))
        .await
        .expect("AT data source");
    let (action, calls) = env.action(&env.rm, "freeze", true).await;
    let mut xid = String::new();
    let result: Result<(), TxError<String>> = env
        .tm
        .run("it-tcc-mixed", TX_TIMEOUT, |ctx| {
            xid = ctx.xid().expect("xid").to_owned();
            let (ds, action) = (ds.clone(), action.clone());
            async move {
                let mut c = ds.get_conn().await.map_err(|e| e.to_string())?;
                c.exec_drop("INSERT INTO ledger (id, amount) VALUES (?, ?)", (1, 30))
                    .await
                    .map_err(|e| e.to_string())?;
                drop(c);
                action
                    .call(json!({"id": 1, "amount": 30}))
                    .await
                    .map_err(|e| e.to_string())?;
                if commit {
                    Ok(())
                } else {
                    Err("rolled back on purpose".into())
                }
            }
        })
        .await;
    assert_eq!(result.is_ok(), commit, "{result:?}");
    env.wait_finished(&xid).await;
    env.db.wait_undo_empty().await;
    let ledger = env.db.scalar("SELECT COUNT(*) FROM ledger").await;
    if commit {
        assert_eq!(calls.get(), (1, 1, 0));
        assert_eq!(env.account().await, (70, 0));
        assert_eq!(ledger, 1);
    } else {
        assert_eq!(calls.get(), (1, 0, 1));
        assert_eq!(env.account().await, (100, 0));
        assert_eq!(ledger, 0);
    }
    let _ = ds.pool().clone().disconnect().await;
    env.close().await;
}

#[tokio::test]
async fn at_and_tcc_commit_together() {
    run(true).await;
}

#[tokio::test]
async fn at_and_tcc_roll_back_together() {
    run(false).await;
}
