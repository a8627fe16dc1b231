//! The enum tables of protocol v1 (spec section 3 and 1.3/1.4): branch types, branch and
//! global statuses, result and exception codes, frame message types, codec and compressor ids.
//!
//! Each enum keeps Seata's wire number as its discriminant and converts from it with
//! `TryFrom`, so an unknown number is a typed error and never a panic. Serde names are
//! Seata's Java names (`PhaseOne_Done`), which the conformance vectors use.

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

/// An enum carried on the wire as one byte.
pub trait WireCode: Copy + TryFrom<u8, Error = ProtocolError> {
    /// The enum's name, for errors.
    const WHAT: &'static str;
    /// The byte written on the wire.
    fn code(self) -> u8;
}

/// Declares a wire enum: discriminants, Java names, `code()`, `TryFrom<u8>` and `Display`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident : $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $java:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $java)] $variant = $code, )+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The number written on the wire.
            #[inline]
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// Seata's Java name of the value.
            pub const fn java_name(self) -> &'static str {
                match self { $($name::$variant => $java),+ }
            }
        }

        impl crate::types::WireCode for $name {
            const WHAT: &'static str = $what;
            #[inline]
            fn code(self) -> u8 {
                self as u8
            }
        }

        impl TryFrom<u8> for $name {
            type Error = ProtocolError;
            #[inline]
            fn try_from(code: u8) -> Result<Self, ProtocolError> {
                match code {
                    $($code => Ok($name::$variant),)+
                    other => Err(ProtocolError::UnknownCode { what: $what, code: i64::from(other) }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.java_name())
            }
        }
    };
}

wire_enum! {
    /// Transaction mode of a branch (encoded as the Java ordinal).
    #[derive(Default)]
    BranchType: "BranchType" {
        #[default]
        At = 0 => "AT",
        Tcc = 1 => "TCC",
        Saga = 2 => "SAGA",
        Xa = 3 => "XA",
    }
}

wire_enum! {
    /// Status of a branch transaction.
    #[derive(Default)]
    BranchStatus: "BranchStatus" {
        #[default]
        Unknown = 0 => "Unknown",
        Registered = 1 => "Registered",
        PhaseOneDone = 2 => "PhaseOne_Done",
        PhaseOneFailed = 3 => "PhaseOne_Failed",
        PhaseOneTimeout = 4 => "PhaseOne_Timeout",
        PhaseTwoCommitted = 5 => "PhaseTwo_Committed",
        PhaseTwoCommitFailedRetryable = 6 => "PhaseTwo_CommitFailed_Retryable",
        PhaseTwoCommitFailedUnretryable = 7 => "PhaseTwo_CommitFailed_Unretryable",
        PhaseTwoRollbacked = 8 => "PhaseTwo_Rollbacked",
        PhaseTwoRollbackFailedRetryable = 9 => "PhaseTwo_RollbackFailed_Retryable",
        PhaseTwoRollbackFailedUnretryable = 10 => "PhaseTwo_RollbackFailed_Unretryable",
    }
}

wire_enum! {
    /// Status of a global transaction.
    #[derive(Default)]
    GlobalStatus: "GlobalStatus" {
        #[default]
        UnKnown = 0 => "UnKnown",
        Begin = 1 => "Begin",
        Committing = 2 => "Committing",
        CommitRetrying = 3 => "CommitRetrying",
        Rollbacking = 4 => "Rollbacking",
        RollbackRetrying = 5 => "RollbackRetrying",
        TimeoutRollbacking = 6 => "TimeoutRollbacking",
        TimeoutRollbackRetrying = 7 => "TimeoutRollbackRetrying",
        AsyncCommitting = 8 => "AsyncCommitting",
        Committed = 9 => "Committed",
        CommitFailed = 10 => "CommitFailed",
        Rollbacked = 11 => "Rollbacked",
        RollbackFailed = 12 => "RollbackFailed",
        TimeoutRollbacked = 13 => "TimeoutRollbacked",
        TimeoutRollbackFailed = 14 => "TimeoutRollbackFailed",
        Finished = 15 => "Finished",
    }
}

impl GlobalStatus {
    /// A final status: the TC will do nothing more for this transaction.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            GlobalStatus::Committed
                | GlobalStatus::CommitFailed
                | GlobalStatus::Rollbacked
                | GlobalStatus::RollbackFailed
                | GlobalStatus::TimeoutRollbacked
                | GlobalStatus::TimeoutRollbackFailed
                | GlobalStatus::Finished
        )
    }
}

wire_enum! {
    /// Outcome of a request (encoded as the Java ordinal).
    #[derive(Default)]
    ResultCode: "ResultCode" {
        #[default]
        Failed = 0 => "Failed",
        Success = 1 => "Success",
    }
}

wire_enum! {
    /// Why a transaction request failed (encoded as the Java ordinal).
    #[derive(Default)]
    TransactionExceptionCode: "TransactionExceptionCode" {
        #[default]
        Unknown = 0 => "Unknown",
        BeginFailed = 1 => "BeginFailed",
        LockKeyConflict = 2 => "LockKeyConflict",
        Io = 3 => "IO",
        BranchRollbackFailedRetriable = 4 => "BranchRollbackFailed_Retriable",
        BranchRollbackFailedUnretriable = 5 => "BranchRollbackFailed_Unretriable",
        BranchRegisterFailed = 6 => "BranchRegisterFailed",
        BranchReportFailed = 7 => "BranchReportFailed",
        LockableCheckFailed = 8 => "LockableCheckFailed",
        BranchTransactionNotExist = 9 => "BranchTransactionNotExist",
        GlobalTransactionNotExist = 10 => "GlobalTransactionNotExist",
        GlobalTransactionNotActive = 11 => "GlobalTransactionNotActive",
        GlobalTransactionStatusInvalid = 12 => "GlobalTransactionStatusInvalid",
        FailedToSendBranchCommitRequest = 13 => "FailedToSendBranchCommitRequest",
        FailedToSendBranchRollbackRequest = 14 => "FailedToSendBranchRollbackRequest",
        FailedToAddBranch = 15 => "FailedToAddBranch",
        FailedLockGlobalTransaction = 16 => "FailedLockGlobalTranscation",
        FailedWriteSession = 17 => "FailedWriteSession",
        FailedStore = 18 => "FailedStore",
    }
}

wire_enum! {
    /// Frame byte 9 (spec 1.3). 0 and 2 are both requests; Java 1.2 sends every single
    /// request as 2 ("oneway") even when it expects an answer, and batches as 0.
    MessageType: "messageType" {
        Request = 0 => "REQUEST",
        Response = 1 => "RESPONSE",
        RequestOneway = 2 => "REQUEST_ONEWAY",
        HeartbeatRequest = 3 => "HEARTBEAT_REQUEST",
        HeartbeatResponse = 4 => "HEARTBEAT_RESPONSE",
    }
}

impl MessageType {
    /// 0 or 2: the receiver dispatches it as a request.
    pub const fn is_request(self) -> bool {
        matches!(self, MessageType::Request | MessageType::RequestOneway)
    }

    /// 3 or 4: a heartbeat, which never has a body.
    pub const fn is_heartbeat(self) -> bool {
        matches!(
            self,
            MessageType::HeartbeatRequest | MessageType::HeartbeatResponse
        )
    }
}

wire_enum! {
    /// Frame byte 10: the body serializer. Only SEATA is implemented; the others are named so
    /// errors can say what the peer sent.
    #[derive(Default)]
    Codec: "codec" {
        #[default]
        Seata = 1 => "SEATA",
        Protobuf = 2 => "PROTOBUF",
        Kryo = 4 => "KRYO",
        Fst = 8 => "FST",
    }
}

wire_enum! {
    /// Frame byte 11: the body compressor.
    #[derive(Default)]
    Compressor: "compressor" {
        #[default]
        None = 0 => "NONE",
        Gzip = 1 => "GZIP",
        Zip = 2 => "ZIP",
        SevenZ = 3 => "SEVENZ",
        Bzip2 = 4 => "BZIP2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_is_an_error() {
        for s in BranchStatus::ALL {
            assert_eq!(BranchStatus::try_from(s.code()).unwrap(), *s);
        }
        for s in GlobalStatus::ALL {
            assert_eq!(GlobalStatus::try_from(s.code()).unwrap(), *s);
        }
        assert_eq!(TransactionExceptionCode::ALL.len(), 19);
        assert!(matches!(
            GlobalStatus::try_from(16),
            Err(ProtocolError::UnknownCode {
                what: "GlobalStatus",
                code: 16
            })
        ));
        assert!(BranchType::try_from(4).is_err());
        assert!(Codec::try_from(3).is_err());
    }

    #[test]
    fn names_match_java() {
        assert_eq!(BranchStatus::PhaseOneDone.to_string(), "PhaseOne_Done");
        assert_eq!(
            TransactionExceptionCode::FailedLockGlobalTransaction.java_name(),
            "FailedLockGlobalTranscation"
        );
    }
}
