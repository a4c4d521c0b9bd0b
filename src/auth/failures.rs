//! The per-IP quota on failed authentications (`[limits] auth_failures_per_ip`): each
//! presented credential that turns out wrong costs its client key one handshake of a GCRA
//! quota (the per-IP handshake tables of [`IpLimits`], with their bound on keys). A key that
//! ran out is refused with 429 before its next credential is even looked at, until the quota
//! allows one more: guessing tokens gets no answers, only 429s.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::limits::{ip_key, IpLimits, IpLimitsConfig, IpRefusal};

/// Per-IP failed-authentication quota, kept across reloads.
pub struct AuthFailures {
    quota: IpLimits,
    /// Keys that ran out, and until when. Bounded like the quota's table: only keys that
    /// failed more than their burst are here, and expired ones are swept.
    blocked: DashMap<IpAddr, Instant>,
    max_blocked: AtomicUsize,
}

impl Default for AuthFailures {
    /// Off until a configuration applies a quota.
    fn default() -> Self {
        AuthFailures {
            quota: IpLimits::new(&IpLimitsConfig::default()),
            blocked: DashMap::new(),
            max_blocked: AtomicUsize::new(0),
        }
    }
}

impl AuthFailures {
    /// Applies `per_minute` failures with `burst` at once; `None` turns the quota off.
    pub fn reconfigure(
        &self,
        per_minute: Option<NonZeroU32>,
        burst: Option<NonZeroU32>,
        max_tracked_ips: u32,
    ) {
        self.quota.reconfigure(&IpLimitsConfig {
            connections_per_ip: None,
            handshakes_per_ip_per_minute: per_minute,
            handshake_burst: burst,
            max_tracked_ips,
        });
        let max = usize::try_from(max_tracked_ips).unwrap_or(usize::MAX);
        self.max_blocked.store(max, Ordering::Relaxed);
        if per_minute.is_none() {
            self.blocked.clear();
        }
    }

    /// `Err(retry after)` while `ip` is out of failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let key = ip_key(ip);
        let Some(until) = self.blocked.get(&key).map(|u| *u) else {
            return Ok(());
        };
        let now = Instant::now();
        if now < until {
            return Err(until - now);
        }
        self.blocked.remove_if(&key, |_, u| *u <= now);
        Ok(())
    }

    /// Counts one failure of `ip`; `Err(retry after)` when that was one too many.
    pub fn charge(&self, ip: IpAddr) -> Result<(), Duration> {
        match self.quota.handshake(ip) {
            Err(IpRefusal::TooManyHandshakes { retry_after }) => {
                let full = self.blocked.len() >= self.max_blocked.load(Ordering::Relaxed);
                if !full {
                    self.blocked
                        .insert(ip_key(ip), Instant::now() + retry_after);
                }
                Err(retry_after)
            }
            _ => Ok(()),
        }
    }

    /// Drops expired state; on the same timer as the other per-IP tables.
    pub fn housekeeping(&self) {
        let now = Instant::now();
        self.blocked.retain(|_, until| *until > now);
        self.blocked.shrink_to_fit();
        self.quota.housekeeping();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_key_out_of_failures_is_refused_until_one_more_is_allowed() {
        let f = AuthFailures::default();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(f.charge(ip), Ok(()), "off: nothing counts");
        f.reconfigure(NonZeroU32::new(60), NonZeroU32::new(2), 1000);
        assert_eq!(f.check(ip), Ok(()));
        assert_eq!(f.charge(ip), Ok(()));
        assert_eq!(f.charge(ip), Ok(()));
        let retry = f
            .charge(ip)
            .expect_err("the third failure at once is one too many");
        assert!(retry <= Duration::from_secs(1), "{retry:?}");
        assert!(f.check(ip).is_err());
        assert_eq!(f.check(other), Ok(()), "other keys are not touched");
        f.reconfigure(None, None, 1000);
        assert_eq!(
            f.check(ip),
            Ok(()),
            "turning the quota off forgets the blocks"
        );
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let f = AuthFailures::default();
        f.reconfigure(NonZeroU32::new(1), NonZeroU32::new(1), 1000);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(f.charge(a), Ok(()));
        assert!(f.charge(b).is_err());
        assert!(f.check(a).is_err());
    }
}
