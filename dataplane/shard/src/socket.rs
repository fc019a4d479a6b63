//! Listener sockets: one `SO_REUSEPORT` UDP socket per shard and listener, with a large
//! receive buffer, and the optional Unix datagram socket. Also reads the kernel's drop
//! counter for a socket from `/proc/net/udp{,6}`.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Binds a non-blocking UDP socket with `SO_REUSEPORT` and asks for `rcvbuf` bytes of receive
/// buffer (`SO_RCVBUFFORCE` when permitted, else `SO_RCVBUF`, capped by `net.core.rmem_max`).
/// Returns the socket and the buffer size the kernel granted.
///
/// # Errors
/// The bind error, with the address.
pub fn bind_udp(addr: SocketAddr, rcvbuf: usize) -> io::Result<(Socket, usize)> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    set_rcvbuf(&s, rcvbuf);
    s.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("binding udp://{addr}: {e}")))?;
    let granted = s.recv_buffer_size().unwrap_or(0);
    Ok((s, granted))
}

/// Asks for `bytes` of receive buffer: `SO_RCVBUFFORCE` when permitted, else `SO_RCVBUF`.
pub fn set_rcvbuf(s: &Socket, bytes: usize) {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt reads one c_int from a valid pointer.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = s.set_recv_buffer_size(bytes);
    }
}

/// Prepares a Unix datagram socket path: removes a stale socket file left by a previous run
/// (never any other kind of file).
///
/// # Errors
/// When the path exists and is not a socket.
pub fn clear_stale_unix_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The socket's inode, which names it in `/proc/net/udp`.
pub fn socket_inode(fd: i32) -> Option<u64> {
    // SAFETY: fstat writes one stat struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st.st_ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_shards_can_share_a_port() {
        let (a, _) = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let addr = a.local_addr().unwrap().as_socket().unwrap();
        let (b, granted) = bind_udp(addr, 1 << 20).unwrap();
        assert!(granted > 0);
        assert!(socket_inode(b.as_raw_fd()).is_some());
    }
}
