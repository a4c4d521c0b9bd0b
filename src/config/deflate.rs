//! Validation of `[deflate]` and a route's `deflate` (permessage-deflate, RFC 7692).

use super::check::{Checker, Whole};
use super::raw::{Field, RawDeflate};
use super::DEFAULT_DEFLATE_MAX_WINDOW_BITS;
use crate::deflate::negotiate::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::deflate::{DeflateConfig, DeflateMode};

impl Checker<'_> {
    pub(super) fn deflate(&mut self, d: &RawDeflate) -> Option<DeflateConfig> {
        let mode = self.deflate_mode("deflate.mode", &d.mode);
        let context_takeover = self.boolean("deflate.context_takeover", &d.context_takeover, false);
        let bits = self.whole(
            "deflate.max_window_bits",
            &d.max_window_bits,
            MIN_WINDOW_BITS.into()..=MAX_WINDOW_BITS.into(),
            Whole::Count,
        );
        let inspect_backend = self.boolean("deflate.inspect_backend", &d.inspect_backend, true);
        Some(DeflateConfig {
            mode: mode?.unwrap_or(DeflateMode::Inspect),
            context_takeover: context_takeover?,
            // In 8..=15 once validated.
            max_window_bits: bits?.map_or(DEFAULT_DEFLATE_MAX_WINDOW_BITS, |b| b as u8),
            inspect_backend: inspect_backend?,
        })
    }

    /// `[deflate] mode` or a route's `deflate`; `Some(None)` when absent.
    pub(super) fn deflate_mode(&mut self, key: &str, field: &Field) -> Option<Option<DeflateMode>> {
        self.choice(
            key,
            field,
            None,
            &[
                ("inspect", Some(DeflateMode::Inspect)),
                ("off", Some(DeflateMode::Off)),
            ],
        )
    }
}
