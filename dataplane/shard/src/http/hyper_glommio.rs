//! The hyper-on-glommio shim: hyper 1.x's `rt::Read`/`rt::Write` over a glommio
//! `TcpStream` (or a TLS stream over one: any futures `AsyncRead + AsyncWrite`), and hyper's
//! `rt::Timer` (header read timeout).
//!
//! This is the only place hyper meets glommio. hyper drives each HTTP/1.1 connection as one
//! future on the shard's executor; nothing here is shared between threads. hyper requires
//! its timer's sleeps to be `Send`, which glommio's timers are not, so the timer is
//! `futures-timer` (one global timer thread, used only for the header read deadline).

use futures_lite::{AsyncRead, AsyncWrite};
use hyper::rt::{Read, ReadBufCursor, Sleep, Timer, Write};
use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A glommio TCP stream (or a TLS stream over one) as hyper I/O (shared, so the connection
/// task can still drain it once hyper is done with it), and a flag telling whether bytes
/// arrived since the last answer was written: a header timeout with bytes pending is a slow
/// head (slowloris), without them an idle keep-alive connection. The stream is borrowed only
/// inside each poll. Monomorphised per stream type: the plain path has no TLS branch.
#[derive(Debug)]
pub struct HyperStream<S>(pub Rc<RefCell<S>>, pub Rc<Cell<bool>>);

impl<S: AsyncRead + Unpin> Read for HyperStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: the bytes are initialised below before anything reads them, and only the
        // count the reader reports is advanced.
        let uninit = unsafe { buf.as_mut() };
        for b in uninit.iter_mut() {
            b.write(0);
        }
        // SAFETY: every byte of `uninit` was just initialised.
        let init: &mut [u8] = unsafe {
            &mut *(std::ptr::from_mut::<[std::mem::MaybeUninit<u8>]>(uninit) as *mut [u8])
        };
        match Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, init) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.1.set(true);
                }
                // SAFETY: `n` bytes were written by the read (and all were initialised).
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> Write for HyperStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.1.set(false);
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    /// Only flushes: the connection task half-closes the socket once hyper is done with it,
    /// after answering a head hyper could not parse (see `http::connection`).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }
}

/// hyper's timer, backed by `futures-timer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperTimer;

struct TimerSleep(futures_timer::Delay);

impl std::future::Future for TimerSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Sleep for TimerSleep {}

impl Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(TimerSleep(futures_timer::Delay::new(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}
