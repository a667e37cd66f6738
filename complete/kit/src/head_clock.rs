//! Two deadlines where hyper has one, for step 14. hyper's
//! `header_read_timeout` starts when it starts waiting for a request head,
//! so on a keep-alive connection the idle wait and the head itself share
//! one limit: a 10 s slowloris deadline would close every connection idle
//! for 10 s. So hyper's is off, and a [`HeadClock`] keeps both: each head
//! from its first byte (`header_read`, 10 s), and an idle connection from
//! the end of its last response (`keep_alive`, 60 s).
//!
//! One timer a connection, moved lazily. The keep-alive deadline moves at
//! every request; setting a timer each time (out of tokio's timer wheel,
//! and in again) is what hyper's deadline cost: without it, step 17
//! spends 1,000 instructions a request fewer (callgrind; hyper's timer
//! functions alone counted 650 to 730). So the timer is brought forward
//! only when it must be; one set for earlier than the deadline is left:
//! it wakes the connection early, at most once a `keep_alive`, and the
//! read that follows sets it for the deadline. A read that waits always
//! makes sure a timer is set, a request in flight or not (then for
//! `keep_alive` from now, the earliest the deadline can be): the end of a
//! response is not always followed by a read, and a connection whose last
//! wait came before its response ended would otherwise never be woken
//! (the matrix caught that on a loaded machine, 3 runs in 4).
//!
//! The clock sits around the client's connection ([`Clocked`]) and sees
//! only bytes; the service tells it where requests begin and end
//! ([`HeadClock::request_started`], and the guard it returns, dropped with
//! the response body). Bytes that arrive while no request is in flight
//! start a head; a request handed to the service ends it. An HTTP/2
//! connection, or one whose protocol switched ([`RequestDone::switched`],
//! once the 101 is sent: asking is not enough), is no longer timed: its
//! bytes are frames, not heads (HTTP/2 heads are bounded in size by step
//! 09; the first request of any connection by step 14's first-request
//! deadline).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What one connection's service and its bytes share.
pub struct HeadClock {
    limit: Duration,
    keep_alive: Duration,
    born: Instant,
    /// Requests whose response is not done yet.
    in_flight: AtomicUsize,
    /// When the head being read began (ms since `born`, + 1); 0: none.
    head_since: AtomicU64,
    /// When the last response ended (the same way; 1: `born`).
    idle_since: AtomicU64,
    /// HTTP/2, or switched: not timed any more.
    off: AtomicBool,
}

impl HeadClock {
    /// `limit` for each head, from its first byte; `keep_alive` between
    /// requests.
    pub fn new(limit: Duration, keep_alive: Duration) -> Arc<HeadClock> {
        Arc::new(HeadClock {
            limit,
            keep_alive,
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(1),
            off: AtomicBool::new(false),
        })
    }

    /// `io`, timed by this clock.
    pub fn clocked<I>(self: &Arc<Self>, io: I) -> Clocked<I> {
        Clocked {
            io,
            clock: self.clone(),
            timer: None,
        }
    }

    /// A request's head is complete: its clock stops. `timed = false` for
    /// an HTTP/2 request: the clock stops for good. The guard marks the end
    /// of the request (keep it with the response body).
    pub fn request_started(self: &Arc<Self>, timed: bool) -> RequestDone {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        if !timed {
            self.off.store(true, Ordering::Relaxed);
        }
        RequestDone(self.clone())
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    // ANCHOR: head_starts
    /// Bytes came: between requests, they begin a head.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.millis(), Ordering::Relaxed);
        }
    }

    /// When the head being read must be complete, if one is being read.
    fn deadline(&self) -> Option<Instant> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        match self.head_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.born + Duration::from_millis(since - 1) + self.limit),
        }
    }
    // ANCHOR_END: head_starts

    /// When no head is being read: when the next one must begin,
    /// `keep_alive` after the last response. With a request in flight that
    /// is not known yet, but it is at least `keep_alive` from `now`: a timer
    /// set for then is there when the response ends, which no read follows.
    fn idle_deadline(&self, now: Instant) -> Option<Instant> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        Some(match self.in_flight.load(Ordering::Relaxed) {
            0 => {
                let since = self.idle_since.load(Ordering::Relaxed);
                self.born + Duration::from_millis(since - 1) + self.keep_alive
            }
            _ => now + self.keep_alive,
        })
    }
}

/// Dropped when a request's response is done (or abandoned).
pub struct RequestDone(Arc<HeadClock>);

impl RequestDone {
    /// The connection switched protocols (a 101, or a tunnel opened): what
    /// follows is not heads, and is never timed again. Only the answer
    /// counts: a client that merely asks to switch, and is refused, is
    /// timed like any other, or `Upgrade: x` would turn the clock off.
    pub fn switched(&self) {
        self.0.off.store(true, Ordering::Relaxed);
    }
}

impl Drop for RequestDone {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.millis(), Ordering::Relaxed);
        }
    }
}

/// A client connection whose request heads, and the waits between
/// them, are timed.
pub struct Clocked<I> {
    io: I,
    clock: Arc<HeadClock>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Clocked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
        {
            this.clock.bytes_arrived();
        }
        let head = this.clock.deadline();
        // Between heads, only a wait matters.
        if head.is_none() && !polled.is_pending() {
            return polled;
        }
        let now = Instant::now();
        let (deadline, missed) = match head {
            Some(head) => (head, "the request head did not arrive within header_read"),
            None => match this.clock.idle_deadline(now) {
                Some(idle) => (idle, "no request came within keep_alive"),
                None => return polled,
            },
        };
        if now >= deadline {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                missed,
            )));
        }
        if polled.is_pending() {
            // Woken at the deadline, or before it (see the module's doc).
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() > deadline || timer.deadline() <= now {
                timer.as_mut().reset(deadline);
            }
            let _ = timer.as_mut().poll(cx);
        }
        polled
    }
}

// Writes go straight through.
impl<I: AsyncWrite + Unpin> AsyncWrite for Clocked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
