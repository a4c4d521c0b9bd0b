//! Warnings about settings that are valid but below what the common chat stacks send in
//! normal use: with them, a stock Socket.IO, `ws` or python `websockets` deployment would
//! have ordinary traffic refused. `wsguard check` prints them and still exits 0; a running
//! proxy logs them once at start.

use super::{format_size, Config, OnLimit};

/// The largest message the stacks allow by default: python websockets' `max_size`
/// (1 MiB), just above Socket.IO's `maxHttpBufferSize` (1 MB).
const STACK_MESSAGE: u64 = 1 << 20;
/// Queued messages a reconnecting Socket.IO client sends at once.
const STACK_FLUSH: u32 = 500;
/// Connections opened at once from one address: an office behind NAT, a browser
/// restoring its tabs after a deploy.
const STACK_TABS: u32 = 100;

impl Config {
    /// Valid settings below what the common chat stacks send in normal use, one line each.
    pub fn warnings(&self) -> Vec<String> {
        warnings(self)
    }
}

/// One line per setting below what the stacks send, naming the key and the consequence.
fn warnings(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let sizes = [
        ("frames.max_frame_size", c.frames.max_frame_size),
        ("frames.max_message_size", c.frames.max_message_size),
    ];
    for (key, cap) in sizes {
        if let Some(cap) = cap.filter(|&n| n < STACK_MESSAGE) {
            out.push(format!(
                "{key} = {:?} is below the {} message python websockets (max_size) and \
                 Socket.IO (maxHttpBufferSize 1 MB) accept; clients send each message as one \
                 frame, so larger ones are closed with 1009",
                format_size(cap),
                format_size(STACK_MESSAGE)
            ));
        }
    }
    let rate = &c.rate;
    if rate.on_limit == OnLimit::Close {
        if let Some(burst) = rate.quota.burst.filter(|b| b.get() < STACK_FLUSH) {
            out.push(format!(
                "rate.burst = {burst} is below the {STACK_FLUSH} queued messages a \
                 reconnecting Socket.IO client sends at once; with on_limit = \"close\" it \
                 is closed with 1008 (raise burst, or use on_limit = \"delay\")"
            ));
        }
        let frame = c.frames.max_frame_size.unwrap_or(u64::MAX);
        if let Some(bytes) = rate
            .quota
            .burst_bytes
            .filter(|b| u64::from(b.get()) < frame)
        {
            out.push(format!(
                "rate.burst_bytes = {:?} is below frames.max_frame_size; with on_limit = \
                 \"close\" a frame larger than the burst is always closed with 1008",
                format_size(u64::from(bytes.get()))
            ));
        }
    }
    let limits = &c.limits;
    let per_ip = [
        (
            "limits.connections_per_ip",
            limits.connections_per_ip,
            "closed at accept",
        ),
        (
            "limits.handshake_burst",
            limits.handshake_burst,
            "answered 429",
        ),
    ];
    for (key, n, refused) in per_ip {
        if let Some(n) = n.filter(|n| n.get() < STACK_TABS) {
            out.push(format!(
                "{key} = {n} is below the {STACK_TABS} connections one address opens at once \
                 (an office behind NAT, a browser restoring its tabs); the rest are {refused}"
            ));
        }
    }
    out
}
