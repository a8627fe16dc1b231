//! Every request path opens a span carrying the XID (and the branch id where there is one),
//! checked with a subscriber that records span fields.

use std::collections::HashMap;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::*;

/// A span's fields by name.
type FieldMap = HashMap<&'static str, String>;

/// Span name and fields by span id.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<HashMap<u64, (&'static str, FieldMap)>>>);

struct Fields<'a>(&'a mut FieldMap);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut all = self.0.lock().unwrap();
        all.insert(id.into_u64(), (attrs.metadata().name(), fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

impl Spans {
    /// The fields of every span named `name`.
    fn named(&self, name: &str) -> Vec<FieldMap> {
        let all = self.0.lock().unwrap();
        all.values()
            .filter(|(n, _)| *n == name)
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// Asserts a span `name` has `xid` (and `branch_id` when given).
    fn assert_has(&self, name: &str, xid: &str, branch_id: Option<i64>) {
        let found = self.named(name);
        let ok = found.iter().any(|f| {
            f.get("xid").map(String::as_str) == Some(xid)
                && branch_id.is_none_or(|b| f.get("branch_id") == Some(&b.to_string()))
        });
        assert!(
            ok,
            "no span {name} with xid {xid} and branch {branch_id:?}: {found:?}"
        );
    }
}

#[tokio::test]
async fn request_paths_and_phase_two_carry_the_xid_and_branch_id() {
    // Other tests of this binary run on other threads without a subscriber. With a single
    // registered dispatcher tracing decides a callsite's interest, for every thread, from the
    // default of the thread that first reaches it: a span first reached by another test was
    // cached "never" and this test saw none of it (about one run in fifteen). A second live
    // dispatcher makes that decision ask all of them; rebuilding the cache before each step
    // also covers a callsite whose registration raced the switch.
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let fresh = tracing::callsite::rebuild_interest_cache;
    let (c, gw) = setup().await;
    fresh();

    let xid = begin(&c).await;
    spans.assert_has("begin", &xid, None);
    let branch = register_ok(&c, &xid, BranchType::At, "db", "t:1").await;
    spans.assert_has("branch_register", &xid, Some(branch));
    c.branch_report(BranchReportRequest {
        xid: xid.clone(),
        branch_id: branch,
        status: BranchStatus::PhaseOneDone,
        ..BranchReportRequest::default()
    })
    .await;
    spans.assert_has("branch_report", &xid, Some(branch));
    c.lock_query(GlobalLockQueryRequest {
        xid: xid.clone(),
        branch_type: BranchType::At,
        resource_id: "db".into(),
        lock_key: "t:1".into(),
        application_data: String::new(),
    })
    .await;
    spans.assert_has("lock_query", &xid, None);
    status(&c, &xid).await;
    spans.assert_has("status", &xid, None);

    // A retryable answer, then the retry job's pass: both phase-two calls and the retry pass
    // carry the XID.
    gw.answer("db", Ok(BranchStatus::PhaseTwoRollbackFailedRetryable));
    fresh();
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackRetrying);
    spans.assert_has("rollback", &xid, None);
    spans.assert_has("branch_rollback", &xid, Some(branch));
    fresh();
    c.run_retry_queue(RetryQueue::RetryRollbacking, id::now_ms() + 3_600_000)
        .await;
    spans.assert_has("phase_two_retry", &xid, None);

    let xid2 = begin(&c).await;
    let b2 = register_ok(&c, &xid2, BranchType::Tcc, "tcc", "").await;
    fresh();
    commit(&c, &xid2).await;
    spans.assert_has("commit", &xid2, None);
    spans.assert_has("branch_commit", &xid2, Some(b2));
}
