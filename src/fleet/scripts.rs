//! The Lua scripts the shared tier runs in Redis, their keys and their arguments. Every time
//! in them is the Redis server's (`TIME`, in microseconds), so the instances' clocks never
//! meet: skew between them changes nothing.

use std::net::IpAddr;
use std::time::Duration;

use redis::{ScriptInvocation, Value};

use super::store::StoreError;
use crate::limits::{IpLimitsConfig, IpRefusal};

/// One handshake of one client key, atomically.
///
/// KEYS[1]: the key's connection leases (a sorted set: member = instance:connection, score =
/// lease expiry in µs). KEYS[2]: the key's GCRA bucket (its theoretical arrival time, µs).
/// ARGV: connection cap (0 = off), lease member, lease µs, emission interval µs (0 = off),
/// burst.
///
/// As the local tier: the connection cap first, and a handshake is charged only if a slot is
/// free; a lease is added only if the handshake passes. Returns {0} allowed, {1} over the
/// connection cap, {2, µs until the next handshake fits}.
pub(super) const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cap = tonumber(ARGV[1])
local lease = tonumber(ARGV[3])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= cap then
    return {1}
  end
end
local interval = tonumber(ARGV[4])
if interval > 0 then
  local limit = interval * tonumber(ARGV[5])
  local tat = tonumber(redis.call('GET', KEYS[2]) or now)
  if tat < now then tat = now end
  local next_tat = tat + interval
  if next_tat - now > limit then
    return {2, next_tat - now - limit}
  end
  redis.call('SET', KEYS[2], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
end
if cap > 0 then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000))
end
return {0}
"#;

/// Renews leases: KEYS are connection sets, ARGV[1] the lease in µs, ARGV[i + 1] the member
/// of KEYS[i]. A member the store lost (a restart without persistence) is added back, so the
/// counts come back within one renewal.
pub(super) const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[1])
local ms = math.ceil(lease / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, ms)
end
return #KEYS
"#;

/// The connection-set and bucket keys of a client key. The key sits in a hash tag so both
/// land in one slot of a Redis that shards by it.
pub(super) fn keys(prefix: &str, key: IpAddr) -> (String, String) {
    (
        format!("{prefix}{{{key}}}:c"),
        format!("{prefix}{{{key}}}:h"),
    )
}

/// The quotas one admission checks, from the configuration in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Quota {
    /// `connections_per_ip`; 0 = off.
    pub connections: u32,
    /// µs between handshakes at the sustained rate; 0 = off.
    interval_us: u64,
    burst: u32,
}

impl Quota {
    pub(super) fn of(limits: &IpLimitsConfig) -> Quota {
        // At most 1,000,000 per minute (validation): the interval is at least 60 µs.
        let (interval_us, burst) = match limits.handshakes_per_ip_per_minute {
            None => (0, 0),
            Some(rate) => (
                60_000_000 / u64::from(rate.get()),
                limits.handshake_burst.unwrap_or(rate).get(),
            ),
        };
        Quota {
            connections: limits.connections_per_ip.map_or(0, |n| n.get()),
            interval_us,
            burst,
        }
    }

    pub(super) fn is_off(&self) -> bool {
        self.connections == 0 && self.interval_us == 0
    }

    /// The admission script's ARGV.
    pub(super) fn args(
        &self,
        inv: &mut ScriptInvocation<'_>,
        member: Option<&str>,
        lease: Duration,
    ) {
        inv.arg(self.connections)
            .arg(member.unwrap_or(""))
            .arg(micros(lease))
            .arg(self.interval_us)
            .arg(self.burst);
    }
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The admission script's answer: yes, or the refusal the local tier would give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admitted {
    Yes,
    No(IpRefusal),
}

/// Reads the admission script's reply (see [`ADMIT`]).
pub(super) fn admitted(reply: Value) -> Result<Admitted, StoreError> {
    let Value::Array(items) = reply else {
        return Err(StoreError::Reply);
    };
    match items.as_slice() {
        [Value::Int(0)] => Ok(Admitted::Yes),
        [Value::Int(1)] => Ok(Admitted::No(IpRefusal::TooManyConnections)),
        [Value::Int(2), Value::Int(us)] => Ok(Admitted::No(IpRefusal::TooManyHandshakes {
            retry_after: Duration::from_micros(u64::try_from(*us).unwrap_or(0)),
        })),
        _ => Err(StoreError::Reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn quota_follows_the_local_settings() {
        let limits = IpLimitsConfig {
            connections_per_ip: NonZeroU32::new(3),
            handshakes_per_ip_per_minute: NonZeroU32::new(600),
            handshake_burst: NonZeroU32::new(60),
            ..IpLimitsConfig::default()
        };
        let q = Quota::of(&limits);
        assert_eq!((q.connections, q.interval_us, q.burst), (3, 100_000, 60));
        let off = Quota::of(&IpLimitsConfig::default());
        assert!(off.is_off());
        // A burst defaults to the per-minute rate, as locally.
        let q = Quota::of(&IpLimitsConfig {
            handshakes_per_ip_per_minute: NonZeroU32::new(10),
            ..IpLimitsConfig::default()
        });
        assert_eq!((q.interval_us, q.burst), (6_000_000, 10));
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let ip: IpAddr = "2001:db8::".parse().unwrap();
        assert_eq!(
            keys("wsguard:", ip),
            (
                "wsguard:{2001:db8::}:c".into(),
                "wsguard:{2001:db8::}:h".into()
            )
        );
    }

    #[test]
    fn replies_are_read_strictly() {
        let int = Value::Int;
        assert_eq!(admitted(Value::Array(vec![int(0)])).unwrap(), Admitted::Yes);
        assert_eq!(
            admitted(Value::Array(vec![int(2), int(1_500_000)])).unwrap(),
            Admitted::No(IpRefusal::TooManyHandshakes {
                retry_after: Duration::from_millis(1500)
            })
        );
        assert!(admitted(Value::Array(vec![int(3)])).is_err());
        assert!(admitted(Value::Nil).is_err());
    }
}
