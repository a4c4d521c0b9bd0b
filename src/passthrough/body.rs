//! The two bodies of a pass-through request, each streamed frame by frame and never
//! buffered: the client's upload to the backend, cut at `max_request_body` and after
//! `body_idle_timeout` without a byte, and the backend's answer to the client, ended after
//! `body_idle_timeout` without a byte, at the request's deadline (`max_duration`, the
//! credential's expiry) or when the proxy drains. Each says afterwards why it ended early.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{sleep, Instant, Sleep};

/// Why a body ended before its sender finished it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The upload went over `max_request_body`.
    TooLarge,
    /// No byte for `body_idle_timeout`.
    Idle,
    /// The request's deadline: `max_duration` or the credential's expiry.
    Deadline,
    /// The proxy began to drain.
    Draining,
    /// The sender's connection failed.
    Broken,
}

impl Cut {
    pub fn label(self) -> &'static str {
        match self {
            Cut::TooLarge => "too_large",
            Cut::Idle => "idle",
            Cut::Deadline => "deadline",
            Cut::Draining => "draining",
            Cut::Broken => "broken",
        }
    }
}

/// Where a body records how it ended, read by whoever answers for it.
#[derive(Clone, Default)]
pub struct Ending(Arc<Mutex<Ended>>);

#[derive(Default)]
struct Ended {
    cut: Option<Cut>,
    finished: bool,
}

impl Ending {
    fn set(&self, cut: Cut) {
        let mut ended = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ended.cut.get_or_insert(cut);
    }

    fn finish(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finished = true;
    }

    /// The first reason the body was cut, if it was.
    pub fn cut(&self) -> Option<Cut> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).cut
    }

    /// Whether the body was sent whole.
    pub fn finished(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finished
    }
}

/// The error a cut body reports to hyper, which then aborts that message.
#[derive(Debug)]
pub struct CutError(pub Cut);

impl std::fmt::Display for CutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "body cut: {}", self.0.label())
    }
}

impl std::error::Error for CutError {}

/// An idle timer armed only while the body waits for its sender.
struct Idle {
    after: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Idle {
    fn new(after: Duration) -> Idle {
        Idle { after, timer: None }
    }

    /// Called when the sender had nothing: true once it has had nothing for too long.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let after = self.after;
        let timer = self.timer.get_or_insert_with(|| Box::pin(sleep(after)));
        timer.as_mut().poll(cx).is_ready()
    }

    fn reset(&mut self) {
        self.timer = None;
    }
}

/// The client's upload, as the backend reads it.
pub struct RequestBody {
    inner: Option<Incoming>,
    /// Bytes still allowed.
    left: u64,
    idle: Idle,
    ending: Ending,
}

impl RequestBody {
    /// `inner` is `None` for a request without a body.
    pub fn new(inner: Option<Incoming>, max: u64, idle: Duration, ending: Ending) -> RequestBody {
        if inner.is_none() {
            ending.finish();
        }
        RequestBody {
            inner,
            left: max,
            idle: Idle::new(idle),
            ending,
        }
    }

    fn cut(&mut self, cut: Cut) -> Poll<Option<Result<Frame<Bytes>, CutError>>> {
        self.ending.set(cut);
        self.inner = None;
        Poll::Ready(Some(Err(CutError(cut))))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = CutError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CutError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            if this.ending.cut().is_none() {
                this.ending.finish();
            }
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.left {
                    return this.cut(Cut::TooLarge);
                }
                this.left -= len;
                this.idle.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => this.cut(Cut::Broken),
            Poll::Ready(None) => {
                this.inner = None;
                this.ending.finish();
                Poll::Ready(None)
            }
            Poll::Pending if this.idle.expired(cx) => this.cut(Cut::Idle),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// What ends an answer before the backend does: its deadline, or the drain.
pub type Stop = Pin<Box<dyn Future<Output = Cut> + Send + Sync>>;

/// A stop at `deadline` or when `drain` turns true, whichever comes first.
pub fn stop_at(deadline: Instant, mut drain: tokio::sync::watch::Receiver<bool>) -> Stop {
    Box::pin(async move {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => Cut::Deadline,
            _ = drain.wait_for(|d| *d) => Cut::Draining,
        }
    })
}

/// The backend's answer, as the client reads it. `held` lives as long as the answer: the
/// request's slots and its accounting.
pub struct ResponseBody<H> {
    inner: Option<Source>,
    idle: Idle,
    stop: Stop,
    ending: Ending,
    _held: H,
}

/// Where an answer's bytes come from.
pub enum Source {
    /// Streamed from the backend as it sends.
    Backend(Incoming),
    /// Read whole already (a session handshake whose id was rewritten).
    Whole(Bytes),
}

impl<H> ResponseBody<H> {
    pub fn new(source: Source, idle: Duration, stop: Stop, ending: Ending, held: H) -> Self {
        ResponseBody {
            inner: Some(source),
            idle: Idle::new(idle),
            stop,
            ending,
            _held: held,
        }
    }
}

impl<H: Unpin> Body for ResponseBody<H> {
    type Data = Bytes;
    type Error = CutError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CutError>>> {
        let this = &mut *self;
        let polled = match this.inner.as_mut() {
            None => return Poll::Ready(None),
            Some(Source::Whole(bytes)) => {
                let bytes = std::mem::take(bytes);
                this.inner = None;
                return Poll::Ready((!bytes.is_empty()).then(|| Ok(Frame::data(bytes))));
            }
            Some(Source::Backend(incoming)) => Pin::new(incoming).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => {
                this.ending.set(Cut::Broken);
                this.inner = None;
                Poll::Ready(Some(Err(CutError(Cut::Broken))))
            }
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                // A deliberate stop ends the answer where it stands, so that a streaming
                // client sees a finished response and asks again; a stalled backend is an
                // error the client sees as one.
                if let Poll::Ready(cut) = this.stop.as_mut().poll(cx) {
                    this.ending.set(cut);
                    this.inner = None;
                    return Poll::Ready(None);
                }
                if this.idle.expired(cx) {
                    this.ending.set(Cut::Idle);
                    this.inner = None;
                    return Poll::Ready(Some(Err(CutError(Cut::Idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            None => true,
            Some(Source::Whole(b)) => b.is_empty(),
            Some(Source::Backend(i)) => i.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            None => SizeHint::with_exact(0),
            Some(Source::Whole(b)) => SizeHint::with_exact(b.len() as u64),
            Some(Source::Backend(i)) => i.size_hint(),
        }
    }
}

/// A backend answer read whole, when it is at most `most` bytes and arrives unbroken.
pub async fn read_whole(body: Incoming, most: usize) -> Option<Bytes> {
    let limited = http_body_util::Limited::new(body, most);
    limited.collect().await.ok().map(|c| c.to_bytes())
}
