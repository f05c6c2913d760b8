//! Sockets: listeners bound by the main thread and handed to workers, and one stream type
//! for TCP and unix connections so the protocol code never cares which it has.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
pub mod cidr;
pub mod tls;

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Whether an unused server connection is still fit to use: no EOF and no unexpected
    /// bytes (PostgreSQL sends a FATAL ErrorResponse before it closes an idle session).
    /// One non-blocking MSG_PEEK, which is cheaper than watching idle servers in a poll.
    pub fn is_quiet(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: recv into a valid one-byte buffer on a descriptor this Stream owns.
        let n = unsafe {
            libc::recv(
                self.raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    /// Returns the TCP connect error, if the non-blocking connect failed.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }

    /// Whether a non-blocking connect has completed (the socket has a peer).
    pub fn is_connected(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.peer_addr().is_ok(),
            Stream::Unix(s) => s.peer_addr().is_ok(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

/// Where a server connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// Addresses resolved off the reactor (at config load), tried in order.
    Tcp(Vec<SocketAddr>),
    /// The socket file itself, `DIR/.s.PGSQL.PORT`.
    Unix(PathBuf),
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Tcp(addrs) => match addrs.first() {
                Some(a) => write!(f, "{a}"),
                None => write!(f, "(unresolved)"),
            },
            ServerAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Starts a non-blocking connect. Completion is signalled by writability.
pub fn connect(addr: &ServerAddr) -> io::Result<Stream> {
    match addr {
        ServerAddr::Tcp(addrs) => {
            let first = addrs.first().ok_or_else(|| {
                io::Error::new(io::ErrorKind::AddrNotAvailable, "no address for host")
            })?;
            let s = TcpStream::connect(*first)?;
            let _ = s.set_nodelay(true);
            Ok(Stream::Tcp(s))
        }
        ServerAddr::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path)?)),
    }
}

/// A socket plus its TLS session, if any, as one Read + Write: the relay and the
/// buffers never know whether bytes are encrypted.
pub struct Io<'a, C> {
    pub sock: &'a mut Stream,
    pub tls: Option<&'a mut tls::TlsStream<C>>,
}

impl<C, D> Read for Io<'_, C>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            Some(t) => t.read(self.sock, buf),
            None => self.sock.read(buf),
        }
    }
}

impl<C, D> Write for Io<'_, C>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            Some(t) => t.write(self.sock, buf),
            None => self.sock.write(buf),
        }
    }

    /// Pushes out TLS records rustls still holds; WouldBlock when the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(t) => match t.flush_tls(self.sock)? {
                true => Ok(()),
                false => Err(io::ErrorKind::WouldBlock.into()),
            },
            None => Ok(()),
        }
    }
}

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept()?;
                // Elsewhere the listener's TCP_NODELAY may not carry over.
                #[cfg(not(target_os = "linux"))]
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), addr.to_string()))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(s), "unix".to_string()))
            }
        }
    }
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(r, t, i),
            Listener::Unix(l) => l.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(r, t, i),
            Listener::Unix(l) => l.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(r),
            Listener::Unix(l) => l.deregister(r),
        }
    }
}

/// A TCP listener with SO_REUSEPORT, so every worker binds its own socket on the same
/// address and the kernel spreads new connections across workers without a hand-off.
pub fn bind_tcp_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = tcp_socket(&addr)?;
    let fd = listener.as_raw_fd();
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    // Wake the pooler for a new connection only once its first bytes (SSLRequest or
    // StartupMessage) are in: one wake-up per connection instead of two, as PgBouncer's
    // tcp_defer_accept does. A client that sends nothing is still handed over when the
    // kernel's wait (about a second) runs out, and client_login_timeout applies.
    #[cfg(target_os = "linux")]
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1)?;
    // Linux hands TCP_NODELAY down to accepted sockets: set once here, not per client.
    #[cfg(target_os = "linux")]
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    bind_socket(fd, &addr)?;
    // SAFETY: listen on our own bound socket.
    if unsafe { libc::listen(fd, 1024) } < 0 {
        return Err(io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Whether another socket listens on `addr` already, e.g. a pooler this one takes over
/// from: with SO_REUSEPORT both would then share new connections. Asked before this
/// process binds its own: a bind without SO_REUSEPORT fails only for a listener
/// (SO_REUSEADDR lets it past connections left in TIME_WAIT).
pub fn tcp_addr_has_listener(addr: SocketAddr) -> bool {
    let Ok(probe) = tcp_socket(&addr) else {
        return false;
    };
    let fd = probe.as_raw_fd();
    if set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).is_err() {
        return false;
    }
    matches!(bind_socket(fd, &addr), Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE))
}

/// A fresh TCP socket for `addr`'s family, owned (closed on drop) by the listener type.
fn tcp_socket(addr: &SocketAddr) -> io::Result<std::net::TcpListener> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned by the TcpListener below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own; from here on drop closes it.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

fn bind_socket(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    if addr.is_ipv6() {
        // "::" should mean IPv6 only, since "*" binds 0.0.0.0 separately.
        set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: storage holds a valid sockaddr of `len` bytes for this family.
    if unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live i32 and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Binds the unix socket `DIR/.s.PGSQL.PORT`, replacing a stale socket file left by a
/// crashed run, as PostgreSQL does.
pub fn bind_unix(dir: &Path, port: u16) -> io::Result<(std::os::unix::net::UnixListener, PathBuf)> {
    let path = dir.join(format!(".s.PGSQL.{port}"));
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let l = std::os::unix::net::UnixListener::bind(&path)?;
    l.set_nonblocking(true)?;
    Ok((l, path))
}

/// Expands `listen_addr` entries into socket addresses: "*" is every IPv4 and IPv6 address.
pub fn listen_addrs(entries: &[String], port: u16) -> io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for entry in entries {
        match entry.as_str() {
            "" => {}
            "*" => {
                out.push(SocketAddr::from(([0, 0, 0, 0], port)));
                out.push(SocketAddr::from(([0u16; 8], port)));
            }
            host => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                for a in (host, port).to_socket_addrs()? {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_clients_have_nodelay() {
        let std_listener = bind_tcp_reuseport("127.0.0.1:0".parse().expect("literal"))
            .expect("bind a listener on a free port");
        let addr = std_listener
            .local_addr()
            .expect("bound listener has an address");
        let listener = Listener::Tcp(TcpListener::from_std(std_listener));
        let mut client = std::net::TcpStream::connect(addr).expect("connect to own listener");
        // TCP_DEFER_ACCEPT holds the connection until data arrives; send a byte.
        std::io::Write::write_all(&mut client, b"x").expect("send a byte");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no connection to accept"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        match stream {
            Stream::Tcp(s) => assert!(s.nodelay().expect("getsockopt")),
            Stream::Unix(_) => panic!("a TCP listener accepted a Unix stream"),
        }
    }
}
