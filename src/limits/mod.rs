//! Flood limits, each bounded: per-connection frame quotas ([`FrameRate`], one per direction
//! of a relayed connection) and per-client-IP connection and handshake limits ([`IpLimits`],
//! one per process). Pure: no sockets, no tokio.

mod frame_rate;
mod heartbeat;
mod per_ip;

pub use frame_rate::{Bucket, BurstClock, Charge, FrameRate, FrameRateConfig, Over, RateLimit};
pub use heartbeat::{Heartbeats, DEFAULT_HEARTBEATS, MAX_HEARTBEAT_LEN};
pub use per_ip::{
    ip_key, ConnectionPermit, IpLimits, IpLimitsConfig, IpRefusal, AUTO_HOUSEKEEPING_INTERVAL,
    DEFAULT_MAX_TRACKED_IPS, IPV6_KEY_PREFIX,
};

#[cfg(test)]
mod test_values {
    //! Shorthands both modules' tests use.

    pub fn nz(n: u32) -> Option<std::num::NonZeroU32> {
        std::num::NonZeroU32::new(n)
    }

    pub fn ms(n: u64) -> std::time::Duration {
        std::time::Duration::from_millis(n)
    }
}
