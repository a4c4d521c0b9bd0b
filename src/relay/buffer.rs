//! One direction's bytes between reading and writing, as a sans-I/O state
//! machine: [`FrameBuf`] owns the buffer and the indices into it, and keeps
//! them consistent (checked with `debug_assert!`s after every move). The pump
//! around it does the I/O and runs the decoder; this decides what may be
//! written: whole frames only, except a frame larger than the largest buffer,
//! which is streamed in parts.
//!
//! A direction that holds nothing holds no memory either: its storage goes
//! back to a small per-thread pool while the pump waits for the source, and
//! the next burst borrows one from there (see [`FrameBuf::idle`]).

use std::cell::RefCell;
use std::fmt;

/// Largest buffer. Frames that fit are forwarded whole, so a violation found
/// later in the frame never leaves half a frame at the peer; larger ones (the
/// default `max_frame_size` is 1 MiB) are streamed in parts, so no frame pins
/// more than this. 64 KiB holds every chat message of ordinary size, and a
/// throttled Socket.IO flush of hundreds of them.
pub const MAX_BUF: usize = 64 * 1024 + 14;

/// Smallest storage kept for a partial frame between bursts; it grows
/// (doubling, up to the largest) when a read fills it or a frame does not
/// fit. 1 KiB holds a typical chat message.
pub const MIN_BUF: usize = 1024;

/// Storage kept per thread for the next burst: a direction that waits with
/// nothing held gives its storage back here, so an idle connection costs no
/// buffer, and a busy thread does not allocate per burst.
const POOLED: usize = 4;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Largest control frame: 2-byte header, 4-byte mask key, 125 bytes. The
/// largest buffer holds one whole, so control frames are never streamed and
/// can always be cut.
const MAX_CONTROL_FRAME: usize = 131;

/// The buffer of one direction: no storage while it holds nothing and waits,
/// the largest size while a burst is read, `MIN` to `MAX` bytes while a
/// partial frame waits for the rest (the pump uses [`MIN_BUF`] and
/// [`MAX_BUF`]; tests pick small sizes to reach every state).
///
/// ```text
/// 0        head          mark          parsed         end        len
/// | written | released,   | decoded, not | read, not   | free      |
/// |         | not written | released     | decoded yet |           |
/// ```
///
/// `mark` is also where the frame being decoded starts (or, when it is being
/// streamed, where its unreleased rest starts): `buf[mark..parsed]` is always
/// part of that one frame, and is released whole when it ends.
pub struct FrameBuf<const MIN: usize = MIN_BUF, const MAX: usize = MAX_BUF> {
    buf: Box<[u8]>,
    head: usize,
    mark: usize,
    parsed: usize,
    end: usize,
    /// Part of the frame being decoded was released and the rest was not:
    /// whatever is written next must be the rest of that frame.
    mid_frame: bool,
}

// === impl FrameBuf ===

impl<const MIN: usize, const MAX: usize> FrameBuf<MIN, MAX> {
    const SIZES: () = assert!(MIN > 0 && MIN <= MAX && MAX >= MAX_CONTROL_FRAME);

    /// A buffer holding `early` (bytes that came with the handshake) to decode;
    /// without storage if there are none.
    pub fn new(early: &[u8]) -> Self {
        let () = Self::SIZES;
        let buf = if early.is_empty() {
            Box::default()
        } else {
            let mut buf = vec![0; MIN.max(early.len())].into_boxed_slice();
            buf[..early.len()].copy_from_slice(early);
            buf
        };
        let this = Self {
            buf,
            head: 0,
            mark: 0,
            parsed: 0,
            end: early.len(),
            mid_frame: false,
        };
        this.check();
        this
    }

    /// Bytes read and not yet decoded.
    pub fn unparsed(&self) -> &[u8] {
        &self.buf[self.parsed..self.end]
    }

    /// The decoder consumed the first `n` bytes of [`FrameBuf::unparsed`].
    pub fn consume(&mut self, n: usize) {
        self.parsed += n;
        self.check();
    }

    /// The frame decoded up to here ended and may go: release it for writing.
    pub fn release_frame(&mut self) {
        self.release(self.parsed - self.mark);
    }

    /// The first `n` unreleased bytes, whole frames that passed every rule,
    /// may go (frames are held while they wait for their quota).
    pub fn release(&mut self, n: usize) {
        self.mark += n;
        self.mid_frame = false;
        self.check();
    }

    /// Decoded bytes not released yet: the frame being decoded, or the frames
    /// held for their quota followed by it.
    pub fn unreleased(&self) -> &[u8] {
        &self.buf[self.mark..self.parsed]
    }

    /// The last `len` unreleased bytes, a frame decoded behind `held` bytes of
    /// held frames, go ahead of them and are released. At most 131 bytes (a
    /// heartbeat) plus what they skip move.
    pub fn move_ahead(&mut self, held: usize, len: usize) {
        debug_assert_eq!(self.mark + held + len, self.parsed, "not the last frame");
        debug_assert!(!self.mid_frame, "a streamed frame cannot be passed");
        self.buf[self.mark..self.parsed].rotate_right(len);
        self.release(len);
    }

    /// The last `len` unreleased bytes, a control frame that must not go
    /// (decoded alone, or behind held frames): remove them.
    pub fn cut_last(&mut self, len: usize) {
        debug_assert!(self.parsed - self.mark >= len, "not decoded");
        self.buf
            .copy_within(self.parsed..self.end, self.parsed - len);
        self.parsed -= len;
        self.end -= len;
        self.check();
    }

    /// Makes room to read more while frames are held, releasing nothing: moves
    /// what is kept to the front or grows a full buffer (up to `MAX`). `false`:
    /// the largest buffer is full. (Without storage there is room: the next read
    /// borrows some.)
    pub fn room_to_hold(&mut self) -> bool {
        self.compact();
        if self.buf.is_empty() || self.end < self.buf.len() {
            return true;
        }
        if self.buf.len() < MAX {
            self.resize(self.buf.len() * 2);
            self.check();
            return true;
        }
        false
    }

    /// The frame decoded up to here ended and must not go: remove it. Only
    /// control frames are cut, so at most 131 bytes plus what follows them
    /// in this read move.
    pub fn cut_frame(&mut self) {
        debug_assert!(!self.mid_frame, "a streamed frame cannot be cut");
        self.cut_last(self.parsed - self.mark);
    }

    /// Forgets what was read after the frame decoded up to here (nothing may
    /// follow a close frame, RFC 6455 §5.5.1).
    pub fn drop_unparsed(&mut self) {
        self.end = self.parsed;
        self.check();
    }

    /// Forgets everything not released: the frame that broke a rule or its
    /// quota, and what came after it. Released bytes are still written.
    pub fn discard_unreleased(&mut self) {
        self.parsed = self.mark;
        self.end = self.mark;
        self.check();
    }

    /// Released bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.buf[self.head..self.mark]
    }

    /// The first `n` bytes of [`FrameBuf::output`] were written.
    pub fn written(&mut self, n: usize) {
        self.head += n;
        self.check();
    }

    /// Whether the destination is inside a streamed frame (counting what is
    /// released and not yet written), where no other frame may be written.
    pub fn is_mid_frame(&self) -> bool {
        self.mid_frame
    }

    /// Makes room for the next read; call it when the output is written.
    /// Moves what is left to the front, grows a full buffer (doubling, up to
    /// `MAX`) or, when one frame fills the largest buffer, releases the part
    /// of it decoded so far, which must then be written first (its rules have
    /// been checked up to there).
    pub fn make_room(&mut self) {
        debug_assert!(self.output().is_empty(), "write the output first");
        if !self.room_to_hold() && self.parsed > self.mark {
            self.mark = self.parsed;
            self.mid_frame = true;
            self.check();
        }
    }

    /// Where the next read goes (empty only when [`FrameBuf::make_room`] just
    /// released a streamed part). Borrows the largest storage from the
    /// thread's pool if the buffer has none.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = POOL
                .with_borrow_mut(|pool| pool.pop())
                .filter(|b| b.len() == MAX)
                .unwrap_or_else(|| vec![0; MAX].into_boxed_slice());
        }
        &mut self.buf[self.end..]
    }

    /// The pump is about to wait for its source: an empty buffer gives its
    /// storage back to the thread's pool, and a large one that only holds the
    /// start of a frame moves it to storage with room to spare (at least `MIN`).
    pub fn idle(&mut self) {
        let held = self.end - self.head;
        if held == 0 {
            self.head = 0;
            self.mark = 0;
            self.parsed = 0;
            self.end = 0;
            let storage = std::mem::take(&mut self.buf);
            Self::give_back(storage);
        } else if self.buf.len() > MIN && held <= self.buf.len() / 4 {
            let old = std::mem::take(&mut self.buf);
            self.buf = vec![0; MIN.max((held + 1).next_power_of_two())].into_boxed_slice();
            self.buf[..held].copy_from_slice(&old[self.head..self.end]);
            self.mark -= self.head;
            self.parsed -= self.head;
            self.end = held;
            self.head = 0;
            Self::give_back(old);
        }
        self.check();
    }

    /// Keeps largest-size storage for the thread's next burst, if the pool
    /// has room.
    fn give_back(storage: Box<[u8]>) {
        if storage.len() == MAX {
            POOL.with_borrow_mut(|pool| {
                if pool.len() < POOLED {
                    pool.push(storage);
                }
            });
        }
    }

    /// Bytes of storage held (none while idle).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// A read put `n` bytes into [`FrameBuf::spare`]. One that fills the
    /// buffer says a burst is on: grow.
    pub fn filled(&mut self, n: usize) {
        let room = self.buf.len() - self.end;
        self.end += n;
        if n == room && self.buf.len() < MAX {
            self.resize(self.buf.len() * 2);
        }
        self.check();
    }

    /// Drops everything held: the buffer becomes space to read into and
    /// throw away (draining a peer at the end).
    pub fn clear(&mut self) {
        self.head = 0;
        self.mark = 0;
        self.parsed = 0;
        self.end = 0;
        self.check();
    }

    /// Moves unwritten bytes to the front when everything was consumed or
    /// the buffer is full; otherwise the next read still has room.
    fn compact(&mut self) {
        if self.head == 0 || (self.head < self.end && self.end < self.buf.len()) {
            return;
        }
        self.buf.copy_within(self.head..self.end, 0);
        self.mark -= self.head;
        self.parsed -= self.head;
        self.end -= self.head;
        self.head = 0;
        self.check();
    }

    /// Replaces the buffer with one of `size` bytes (at most `MAX`, never less
    /// than it holds), keeping `buf[..end]`.
    fn resize(&mut self, size: usize) {
        let size = size.min(MAX).max(self.end);
        let mut buf = vec![0; size].into_boxed_slice();
        buf[..self.end].copy_from_slice(&self.buf[..self.end]);
        self.buf = buf;
    }

    fn check(&self) {
        debug_assert!(
            self.head <= self.mark
                && self.mark <= self.parsed
                && self.parsed <= self.end
                && self.end <= self.buf.len(),
            "indices out of order: {self:?}"
        );
        debug_assert!(
            self.buf.len() >= MIN || (self.buf.is_empty() && self.end == 0),
            "below the smallest size: {self:?}"
        );
    }
}

impl<const MIN: usize, const MAX: usize> fmt::Debug for FrameBuf<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBuf")
            .field("head", &self.head)
            .field("mark", &self.mark)
            .field("parsed", &self.parsed)
            .field("end", &self.end)
            .field("len", &self.buf.len())
            .field("mid_frame", &self.mid_frame)
            .finish()
    }
}
