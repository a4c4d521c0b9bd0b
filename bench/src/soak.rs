//! The soak's bookkeeping: which echoes of a connection came and in what order
//! (each message carries its sequence number in its tag), and whether the
//! proxy's memory stayed flat over the window.

use std::collections::BTreeSet;

use serde_json::{json, Value};

/// Seconds of RSS averaged at each end of the window (half the window if shorter).
pub const RSS_SPAN_S: f64 = 10.0;
/// A jump further ahead than this is a corrupt sequence number, not skipped
/// messages: a soak sends one message a second per connection, and tracking
/// the gap would take memory in proportion to it.
const MAX_GAP: u64 = 1 << 16;

/// What an echo was, given the ones before it on its connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Echo {
    /// After every earlier one that has come (earlier ones not yet come are missing).
    InOrder,
    /// A missing one, after a later one.
    Late,
    /// One that had already come.
    Again,
    /// Too far ahead to be a message that was sent.
    Beyond,
}

/// One connection's echoes so far.
#[derive(Default)]
pub struct Sequence {
    next: u64,
    missing: BTreeSet<u64>,
}

impl Sequence {
    pub fn echo(&mut self, seq: u64) -> Echo {
        if seq >= self.next {
            if seq - self.next > MAX_GAP {
                return Echo::Beyond;
            }
            self.missing.extend(self.next..seq);
            self.next = seq + 1;
            Echo::InOrder
        } else if self.missing.remove(&seq) {
            Echo::Late
        } else {
            Echo::Again
        }
    }
}

/// Adds the RSS series (seconds into the window, KiB) and the means over its
/// first and last `RSS_SPAN_S` seconds and their ratio (last ÷ first).
pub fn rss_summary(v: &mut Value, series: &[(f64, u64)]) {
    let Some(&(end, _)) = series.last() else {
        return;
    };
    let span = RSS_SPAN_S.min(end / 2.0);
    let mean = |inside: &dyn Fn(f64) -> bool| {
        let kib: Vec<f64> = series
            .iter()
            .filter(|(t, _)| inside(*t))
            .map(|&(_, k)| k as f64)
            .collect();
        (!kib.is_empty()).then(|| kib.iter().sum::<f64>() / kib.len() as f64)
    };
    v["rss_kib_series"] = json!(series);
    v["rss_span_s"] = json!(span);
    if let (Some(first), Some(last)) = (mean(&|t| t < span), mean(&|t| t > end - span)) {
        v["rss_first_kib"] = json!(first);
        v["rss_last_kib"] = json!(last);
        v["rss_ratio"] = json!(last / first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_echoes_are_late_when_they_come_and_missing_otherwise() {
        let mut s = Sequence::default();
        assert_eq!(s.echo(0), Echo::InOrder);
        assert_eq!(s.echo(3), Echo::InOrder);
        assert_eq!(s.echo(1), Echo::Late);
        assert_eq!(s.echo(1), Echo::Again);
        assert_eq!(s.echo(3), Echo::Again);
        assert_eq!(s.echo(4), Echo::InOrder);
        assert_eq!(s.missing.iter().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(s.echo(4 + MAX_GAP + 2), Echo::Beyond);
        assert_eq!(s.echo(5), Echo::InOrder);
    }

    #[test]
    fn rss_means_over_each_end() {
        let series: Vec<(f64, u64)> = (0..=20).map(|t| (f64::from(t), 1000 + t as u64)).collect();
        let mut v = json!({});
        rss_summary(&mut v, &series);
        // Seconds 0..=9 and 11..=20.
        assert_eq!(v["rss_first_kib"], json!(1004.5));
        assert_eq!(v["rss_last_kib"], json!(1015.5));
        assert_eq!(v["rss_span_s"], json!(10.0));
        let short: Vec<(f64, u64)> = (0..=4).map(|t| (f64::from(t), 100)).collect();
        let mut v = json!({});
        rss_summary(&mut v, &short);
        assert_eq!(v["rss_span_s"], json!(2.0));
        assert_eq!(v["rss_ratio"], json!(1.0));
    }
}
