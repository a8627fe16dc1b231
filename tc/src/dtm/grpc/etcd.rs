//! etcd, the way go-zero uses it (spec §9, issue "the go-zero path"):
//!
//! - **Registration** ([`keep_registered`] of a [`Publication`]): the TC grants a lease of [`LEASE_TTL_S`] seconds,
//!   puts `<etcd-key>/<lease id in decimal>` = `host:port` of its gRPC listener under it, and
//!   keeps the lease alive; on shutdown it revokes the lease, which deletes the key. This is
//!   the layout go-zero's publisher writes and its resolver reads, so a client configured with
//!   `etcd://…/dtmservice` finds the TC. If etcd is unreachable or the lease is lost, the TC
//!   keeps serving and registers again with back-off.
//! - **Resolution** ([`resolve`]): an `etcd://host:port/service/pkg.Service/Method` branch URL
//!   names an etcd and a service key; the addresses are the values of the keys under
//!   `service/`.
//!
//! Only the gRPC calls of etcd's v3 API that this needs are compiled (`proto/etcd.proto`).

use std::time::Duration;

use futures::channel::mpsc;
use futures::SinkExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use super::branch::ChannelPool;
use super::pb::etcdserverpb::kv_client::KvClient;
use super::pb::etcdserverpb::lease_client::LeaseClient;
use super::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
};

/// Lease TTL, s: go-zero's publisher uses 10 s; the key vanishes this long after the TC dies.
pub const LEASE_TTL_S: i64 = 10;
/// Longest wait between two registration attempts while etcd is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long connecting to etcd, and revoking at shutdown, may take.
const ETCD_TIMEOUT: Duration = Duration::from_secs(3);

/// What to keep registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// etcd endpoints (`host:port` or `http://host:port`), tried in order.
    pub endpoints: Vec<String>,
    /// Key prefix, e.g. `dtmservice`; the key is `<key>/<lease id>`.
    pub key: String,
    /// `host:port` clients dial.
    pub value: String,
}

/// The addresses registered under `service/` in the etcd at `etcd` (`host:port`).
pub async fn resolve(pool: &ChannelPool, etcd: &str, service: &str) -> Result<Vec<String>, String> {
    let mut kv = KvClient::new(pool.get(etcd)?);
    let prefix = format!("{service}/").into_bytes();
    let range_end = prefix_end(&prefix);
    let answer = kv
        .range(RangeRequest {
            key: prefix,
            range_end,
            ..Default::default()
        })
        .await
        .map_err(|s| {
            format!(
                "cannot look up {service} in etcd {etcd}: {:?} {}",
                s.code(),
                s.message()
            )
        })?;
    Ok(answer
        .into_inner()
        .kvs
        .into_iter()
        .filter_map(|kv| String::from_utf8(kv.value).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

/// The end of the range of keys starting with `prefix` (etcd's "prefix end": the prefix with
/// its last byte below 0xff incremented and what follows dropped; `\0` = to the end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Keeps `reg` registered until `token` is cancelled, then revokes the lease.
pub async fn keep_registered(reg: Publication, token: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let why = match register_once(&reg, &token).await {
            Ok(()) => return,
            Err(why) => why,
        };
        warn!(
            endpoints = ?reg.endpoints,
            key = reg.key,
            error = %why,
            "etcd registration lost; registering again in {backoff:?}"
        );
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One registration: grant, put, keep alive until cancelled (`Ok`, after revoking) or until
/// the lease or the connection is lost (`Err`).
async fn register_once(reg: &Publication, token: &CancellationToken) -> Result<(), String> {
    let channel = connect(&reg.endpoints).await?;
    let mut lease = LeaseClient::new(channel.clone());
    let granted = lease
        .lease_grant(LeaseGrantRequest {
            ttl: LEASE_TTL_S,
            id: 0,
        })
        .await
        .map_err(|s| format!("lease grant: {}", s.message()))?
        .into_inner();
    if !granted.error.is_empty() {
        return Err(format!("lease grant: {}", granted.error));
    }
    let id = granted.id;
    let key = format!("{}/{id}", reg.key);
    let kept = keep_alive(reg, &mut lease, channel, id, &key, token).await;
    // Cancelled or failed: either way this lease is done; revoking deletes the key at once
    // instead of when the TTL runs out.
    let revoked =
        tokio::time::timeout(ETCD_TIMEOUT, lease.lease_revoke(LeaseRevokeRequest { id })).await;
    match (&kept, revoked) {
        (Ok(()), Ok(Ok(_))) => info!(key, "etcd registration removed"),
        (Ok(()), Ok(Err(s))) => warn!(
            key,
            error = s.message(),
            "etcd lease revoke failed; the key expires with its lease"
        ),
        (Ok(()), Err(_)) => warn!(
            key,
            "etcd lease revoke timed out; the key expires with its lease"
        ),
        (Err(_), _) => {}
    }
    kept
}

/// Puts the key and keeps the lease alive (a request every third of the TTL).
async fn keep_alive(
    reg: &Publication,
    lease: &mut LeaseClient<Channel>,
    channel: Channel,
    id: i64,
    key: &str,
    token: &CancellationToken,
) -> Result<(), String> {
    KvClient::new(channel)
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: reg.value.as_bytes().to_vec(),
            lease: id,
        })
        .await
        .map_err(|s| format!("put {key}: {}", s.message()))?;
    info!(key, value = reg.value, "registered in etcd");
    let (mut tx, rx) = mpsc::channel::<LeaseKeepAliveRequest>(1);
    // The first request goes in before the call: etcd answers the stream's headers only with
    // its first message, so an empty request stream would leave the call waiting forever.
    tx.send(LeaseKeepAliveRequest { id })
        .await
        .map_err(|_| "lease keep-alive stream closed".to_owned())?;
    let opened = tokio::select! {
        _ = token.cancelled() => return Ok(()),
        opened = lease.lease_keep_alive(rx) => opened,
    };
    let mut answers = opened
        .map_err(|s| format!("lease keep-alive: {}", s.message()))?
        .into_inner();
    let period = Duration::from_secs((LEASE_TTL_S / 3).max(1).unsigned_abs());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tick.tick() => {
                tx.send(LeaseKeepAliveRequest { id })
                    .await
                    .map_err(|_| "lease keep-alive stream closed".to_owned())?;
            }
            answer = answers.message() => match answer {
                Ok(Some(a)) if a.ttl > 0 => {}
                Ok(Some(_)) => return Err(format!("lease {id} expired")),
                Ok(None) => return Err("etcd closed the keep-alive stream".into()),
                Err(s) => return Err(format!("lease keep-alive: {}", s.message())),
            },
        }
    }
}

/// A channel to the first endpoint that accepts a connection.
async fn connect(endpoints: &[String]) -> Result<Channel, String> {
    let mut errors = Vec::new();
    for ep in endpoints {
        let url = if ep.contains("://") {
            ep.clone()
        } else {
            format!("http://{ep}")
        };
        let endpoint = match Endpoint::from_shared(url) {
            Ok(e) => e.connect_timeout(ETCD_TIMEOUT).tcp_nodelay(true),
            Err(e) => {
                errors.push(format!("{ep}: {e}"));
                continue;
            }
        };
        match endpoint.connect().await {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(format!("{ep}: {e}")),
        }
    }
    Err(format!("cannot connect to etcd ({})", errors.join("; ")))
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
}
