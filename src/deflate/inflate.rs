//! Inflating a permessage-deflate message to inspect it (RFC 7692 §7.2.2):
//! the compressed bytes go in as they arrive, the inflated bytes come out a
//! few KiB at a time into one buffer per worker thread, are handed to the
//! caller's check, and are dropped. Nothing is sized by a wire length or by
//! the compression ratio, so a bomb costs CPU, never memory.
//!
//! Without context takeover a decompressor is needed only while a message is
//! open: it is taken from a pool at the message's first frame and returned at
//! its last, so an idle connection holds none. With context takeover each
//! direction that keeps context owns one for the connection's life.
//!
//! Every decompressor has a 15-bit window, whatever was negotiated: it reads
//! any smaller window, zlib-rs allocates the full 32 KiB window anyway (47.5 KB
//! a state, measured), and only at 15 bits does a reset keep the state
//! (16 ns) instead of re-creating it (0.8 µs).

use std::cell::RefCell;
use std::sync::Mutex;

use flate2::{Decompress, FlushDecompress, Status};

use super::negotiate::MAX_WINDOW_BITS;

/// Inflated bytes produced per step. 8 KiB keeps the inflater on its fast
/// path for chat-sized messages while staying a per-thread, not
/// per-connection, cost.
const OUT_LEN: usize = 8 << 10;

/// RFC 7692 §7.2.2: the end of every message's compressed data, removed by
/// the sender and appended again by the receiver.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Idle decompressors kept for reuse; more are freed on return.
const POOL_CAP: usize = 64;

thread_local! {
    static OUT: RefCell<[u8; OUT_LEN]> = const { RefCell::new([0; OUT_LEN]) };
}

static POOL: Mutex<Vec<Decompress>> = Mutex::new(Vec::new());

/// Why a message's compressed data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not valid DEFLATE data: a bad block, or a back-reference to before
    /// the start of the data (of the message, without context takeover).
    BadData,
    /// Compressed bytes after a block marked final (BFINAL).
    DataAfterFinalBlock,
}

/// The receiving side of one direction's compression.
#[derive(Debug)]
pub struct Inflater {
    context_takeover: bool,
    /// Present while a message is open, or for the whole connection with
    /// context takeover once the first compressed message arrived.
    state: Option<Decompress>,
    /// The message's data reached a final block.
    ended: bool,
}

impl Inflater {
    /// `context_takeover`: the sender keeps LZ77 context between messages.
    pub fn new(context_takeover: bool) -> Self {
        Inflater {
            context_takeover,
            state: None,
            ended: false,
        }
    }

    /// Inflates the next compressed bytes of the open message, handing each
    /// inflated chunk to `sink` as it is produced; `sink`'s error stops the
    /// work at once. `E` carries both: an [`InflateError`] converts into it.
    pub fn push<E: From<InflateError>>(
        &mut self,
        input: &[u8],
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if input.is_empty() {
            return Ok(());
        }
        if self.ended {
            return Err(InflateError::DataAfterFinalBlock.into());
        }
        self.run(input, sink)
    }

    /// Ends the open message: inflates what its data still holds back, then
    /// frees the decompressor (no context takeover) or keeps it.
    pub fn finish<E: From<InflateError>>(
        &mut self,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.ended {
            self.run(&TRAILER, sink)?;
        }
        if self.ended || !self.context_takeover {
            // A final block ends the LZ77 stream: the next message starts a
            // new one, whatever the context setting.
            if let Some(mut d) = self.state.take() {
                d.reset(false);
                if self.context_takeover {
                    self.state = Some(d);
                } else {
                    give_back(d);
                }
            }
        }
        self.ended = false;
        Ok(())
    }

    fn run<E: From<InflateError>>(
        &mut self,
        mut input: &[u8],
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let d = self.state.get_or_insert_with(take);
        OUT.with_borrow_mut(|out| loop {
            let (in_before, out_before) = (d.total_in(), d.total_out());
            let result = d.decompress(input, out, FlushDecompress::Sync);
            // Both deltas are bounded by the slices' lengths.
            let used = (d.total_in() - in_before) as usize;
            let produced = (d.total_out() - out_before) as usize;
            input = &input[used..];
            // What inflated before bad data goes to the sink first, so the
            // verdict is the stream's first fault (a cap passed there, or bad
            // UTF-8), not whichever the input's split put in one call.
            sink(&out[..produced])?;
            let status = result.map_err(|_| InflateError::BadData)?;
            if status == Status::StreamEnd {
                self.ended = true;
                return if input.is_empty() {
                    Ok(())
                } else {
                    Err(InflateError::DataAfterFinalBlock.into())
                };
            }
            // Done when all input is in and the output had room to spare;
            // no progress at all means the data needs more input.
            if (input.is_empty() && produced < out.len()) || (used == 0 && produced == 0) {
                return Ok(());
            }
        })
    }
}

fn take() -> Decompress {
    let pooled = POOL.lock().ok().and_then(|mut p| p.pop());
    pooled.unwrap_or_else(|| Decompress::new_with_window_bits(false, MAX_WINDOW_BITS))
}

fn give_back(d: Decompress) {
    if let Ok(mut p) = POOL.lock() {
        if p.len() < POOL_CAP {
            p.push(d);
        }
    }
}

#[cfg(test)]
mod tests;
