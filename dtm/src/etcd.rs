//! Finding the coordinator through etcd, as go-zero's resolver does (`etcd://host:port/dtmservice`
//! in a go-zero config's `DtmServer`): the coordinator (seata-tc with `--etcd`, or DTM) keeps
//! `<key>/<lease id>` = `host:port` of its gRPC listener under a lease; the addresses are the
//! values of the keys under `<key>/`. Only etcd's `KV.Range` is compiled (`proto/etcd.proto`, a
//! copy of the part of seata-tc's proto it uses).

use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::Code;

use crate::error::DtmError;
use crate::grpc::endpoint;

/// Code generated from `proto/etcd.proto` by `build.rs`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
mod pb {
    tonic::include_proto!("etcdserverpb");
}

/// An `etcd://host:port[,host:port…]/key` server URL.
#[derive(Debug)]
pub(crate) struct EtcdTarget {
    /// The etcd endpoints (`host:port`), tried in order.
    endpoints: Vec<String>,
    /// The service key, e.g. `dtmservice`.
    key: String,
    /// Round robin over the registered addresses.
    next: AtomicUsize,
}

impl EtcdTarget {
    /// Parses the part after `etcd://`.
    pub(crate) fn parse(rest: &str) -> Result<EtcdTarget, DtmError> {
        let bad = |why: &str| DtmError::invalid(format!("server URL \"etcd://{rest}\""), why);
        let Some((hosts, key)) = rest.split_once('/') else {
            return Err(bad(
                "expected etcd://host:port/key, e.g. etcd://127.0.0.1:2379/dtmservice",
            ));
        };
        let key = key.trim_matches('/');
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() || key.is_empty() {
            return Err(bad(
                "expected etcd://host:port/key, e.g. etcd://127.0.0.1:2379/dtmservice",
            ));
        }
        for e in &endpoints {
            endpoint(e, crate::client::DEFAULT_CALL_TIMEOUT)?;
        }
        Ok(EtcdTarget {
            endpoints,
            key: key.to_owned(),
            next: AtomicUsize::new(0),
        })
    }

    /// One `host:port` registered under the key (round robin over calls), asking the endpoints
    /// in order until one answers.
    pub(crate) async fn resolve(&self) -> Result<String, DtmError> {
        let mut errors = Vec::new();
        for etcd in &self.endpoints {
            match self.lookup(etcd).await {
                Ok(addrs) if addrs.is_empty() => {
                    errors.push(format!("{etcd}: no address under {}/", self.key));
                }
                Ok(mut addrs) => {
                    addrs.sort();
                    let i = self.next.fetch_add(1, Ordering::Relaxed) % addrs.len();
                    return Ok(addrs.swap_remove(i));
                }
                Err(e) => errors.push(format!("{etcd}: {e}")),
            }
        }
        Err(DtmError::Grpc {
            what: format!("finding {} in etcd", self.key),
            gid: String::new(),
            code: Code::Unavailable,
            message: errors.join("; "),
        })
    }

    /// The values of the keys under `<key>/` at `etcd`.
    async fn lookup(&self, etcd: &str) -> Result<Vec<String>, String> {
        let channel = endpoint(etcd, crate::client::DEFAULT_CALL_TIMEOUT)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let prefix = format!("{}/", self.key).into_bytes();
        let range_end = prefix_end(&prefix);
        let answer = pb::kv_client::KvClient::new(channel)
            .range(pb::RangeRequest {
                key: prefix,
                range_end,
                ..Default::default()
            })
            .await
            .map_err(|s| format!("range: {:?} {}", s.code(), s.message()))?;
        Ok(answer
            .into_inner()
            .kvs
            .into_iter()
            .filter_map(|kv| String::from_utf8(kv.value).ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect())
    }
}

/// The end of the range of keys starting with `prefix` (etcd's "prefix end": the prefix with
/// its last byte below 0xff incremented and what follows dropped; `\0` = to the end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"svc/"), b"svc0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn etcd_urls_name_endpoints_and_a_key() {
        let t = EtcdTarget::parse("127.0.0.1:2379,127.0.0.2:2379/dtmservice").unwrap();
        assert_eq!(t.endpoints, ["127.0.0.1:2379", "127.0.0.2:2379"]);
        assert_eq!(t.key, "dtmservice");
        assert!(EtcdTarget::parse("127.0.0.1:2379").is_err());
        assert!(EtcdTarget::parse("127.0.0.1:2379/").is_err());
        assert!(EtcdTarget::parse("/dtmservice").is_err());
    }
}
