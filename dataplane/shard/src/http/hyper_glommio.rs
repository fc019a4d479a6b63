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
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A glommio TCP stream (or a TLS stream over one) as hyper I/O. Monomorphised per stream
/// type: the plain path is exactly the code it was before TLS existed.
#[derive(Debug)]
pub struct HyperStream<S>(pub S);

impl<S: AsyncRead + Unpin> Read for HyperStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
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
        match Pin::new(&mut self.0).poll_read(cx, init) {
            Poll::Ready(Ok(n)) => {
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
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
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
