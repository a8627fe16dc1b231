//! [`Message::refusal`]: the failed answer to a request that is refused without being
//! handled (a connection that is closing), in the response type its sender waits for, so
//! the sender learns for certain that nothing was done instead of losing the answer.

use super::merged::failed_member;
use super::{
    BranchCommitResponse, BranchRegisterResponse, BranchReportResponse, BranchRollbackResponse,
    GlobalBeginResponse, GlobalCommitResponse, GlobalLockQueryResponse, GlobalReportResponse,
    GlobalRollbackResponse, GlobalStatusResponse, MergeResultMessage, Message, RegisterRmResponse,
    RegisterTmResponse, TxResult, UnreadTail,
};
use crate::types::{BranchStatus, GlobalStatus, TransactionExceptionCode as Code};
use crate::SEATA_VERSION;

impl Message {
    /// The failed answer to this request, saying `reason`; `None` for what gets no answer
    /// (responses, one-way messages). A merged batch gets one refusal per member.
    pub fn refusal(&self, reason: &str) -> Option<Message> {
        let failed = |code| TxResult::failed(code, reason);
        let unknown = GlobalStatus::UnKnown;
        Some(match self {
            Message::GlobalBeginRequest(_) => GlobalBeginResponse {
                result: failed(Code::BeginFailed),
                ..GlobalBeginResponse::default()
            }
            .into(),
            Message::GlobalCommitRequest(_) => GlobalCommitResponse {
                result: failed(Code::Unknown),
                global_status: unknown,
            }
            .into(),
            Message::GlobalRollbackRequest(_) => GlobalRollbackResponse {
                result: failed(Code::Unknown),
                global_status: unknown,
            }
            .into(),
            Message::GlobalStatusRequest(_) => GlobalStatusResponse {
                result: failed(Code::Unknown),
                global_status: unknown,
            }
            .into(),
            Message::GlobalReportRequest(_) => GlobalReportResponse {
                result: failed(Code::Unknown),
                global_status: unknown,
            }
            .into(),
            Message::BranchRegisterRequest(_) => BranchRegisterResponse {
                result: failed(Code::BranchRegisterFailed),
                branch_id: 0,
            }
            .into(),
            Message::BranchReportRequest(_) => BranchReportResponse {
                result: failed(Code::BranchReportFailed),
            }
            .into(),
            Message::GlobalLockQueryRequest(_) => GlobalLockQueryResponse {
                result: failed(Code::LockableCheckFailed),
                lockable: false,
            }
            .into(),
            // Phase two refused by a closing RM: the TC retries it.
            Message::BranchCommitRequest(r) => BranchCommitResponse {
                result: failed(Code::Unknown),
                xid: r.xid.clone(),
                branch_id: r.branch_id,
                branch_status: BranchStatus::PhaseTwoCommitFailedRetryable,
            }
            .into(),
            Message::BranchRollbackRequest(r) => BranchRollbackResponse {
                result: failed(Code::Unknown),
                xid: r.xid.clone(),
                branch_id: r.branch_id,
                branch_status: BranchStatus::PhaseTwoRollbackFailedRetryable,
            }
            .into(),
            Message::RegisterTmRequest(_) => RegisterTmResponse {
                identified: false,
                version: SEATA_VERSION.into(),
            }
            .into(),
            Message::RegisterRmRequest(_) => RegisterRmResponse {
                identified: false,
                version: SEATA_VERSION.into(),
            }
            .into(),
            Message::MergedWarpMessage(batch) => MergeResultMessage {
                msgs: batch
                    .msgs
                    .iter()
                    .map(|m| m.refusal(reason).unwrap_or_else(|| failed_member(reason)))
                    .chain(batch.unread.iter().flat_map(UnreadTail::failed_answers))
                    .collect(),
            }
            .into(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        BranchCommitRequest, GlobalBeginRequest, GlobalCommitRequest, MergedWarpMessage,
        UndoLogDeleteRequest,
    };

    #[test]
    fn a_request_is_refused_in_its_own_response_type_and_a_response_not_at_all() {
        let begin = Message::from(GlobalBeginRequest::default()).refusal("closing");
        let Some(Message::GlobalBeginResponse(r)) = begin else {
            panic!("{begin:?}")
        };
        assert!(!r.result.is_success());
        assert_eq!(r.result.transaction_exception_code, Code::BeginFailed);
        assert_eq!(r.result.msg, "closing");
        let commit = Message::from(BranchCommitRequest {
            xid: "x:1:2".into(),
            branch_id: 7,
            ..BranchCommitRequest::default()
        })
        .refusal("closing");
        let Some(Message::BranchCommitResponse(r)) = commit else {
            panic!("{commit:?}")
        };
        assert_eq!(
            (r.xid.as_str(), r.branch_id, r.branch_status),
            ("x:1:2", 7, BranchStatus::PhaseTwoCommitFailedRetryable)
        );
        assert_eq!(Message::from(r).refusal("closing"), None);
        assert_eq!(
            Message::from(UndoLogDeleteRequest::default()).refusal("closing"),
            None
        );
    }

    #[test]
    fn a_merged_batch_gets_one_failed_result_per_member_in_order() {
        let batch = MergedWarpMessage::new(vec![
            GlobalBeginRequest::default().into(),
            GlobalCommitRequest::default().into(),
            UndoLogDeleteRequest::default().into(),
        ]);
        let Some(Message::MergeResultMessage(m)) = Message::from(batch).refusal("closing") else {
            panic!("not a merge result")
        };
        let names: Vec<_> = m.msgs.iter().map(Message::name).collect();
        assert_eq!(
            names,
            [
                "GlobalBeginResponse",
                "GlobalCommitResponse",
                "GlobalStatusResponse"
            ]
        );
    }
}
