//! A raw protocol client that never panics: every failure is a value, so a
//! thread driving thousands of connections, or one whose socket a chaos
//! thread shuts down, can classify what happened. Message builders and the
//! `Msg` type come from the integration harness.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::{msg, Msg};

/// How an operation on a connection failed.
#[derive(Debug)]
pub enum Fail {
    /// The pooler answered with an ErrorResponse (and maybe closed).
    Error(Msg),
    /// No answer within the socket's read timeout: a hang.
    Timeout,
    /// The connection was refused, reset or closed without an ErrorResponse.
    Io(io::Error),
}

impl Fail {
    /// A short label for counting failures by kind.
    pub fn kind(&self) -> String {
        match self {
            Fail::Error(m) => {
                let f = m.fields();
                format!(
                    "{} {}: {}",
                    f.get(&b'S').cloned().unwrap_or_default(),
                    f.get(&b'C').cloned().unwrap_or_default(),
                    f.get(&b'M').cloned().unwrap_or_default()
                )
            }
            Fail::Timeout => "timeout (no answer)".to_string(),
            Fail::Io(e) => format!("io: {:?}", e.kind()),
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Fail::Timeout)
    }
}

fn classify(e: io::Error) -> Fail {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::Timeout,
        _ => Fail::Io(e),
    }
}

/// One client connection to the pooler.
pub struct Conn {
    pub s: TcpStream,
    /// BackendKeyData, if the pooler sent one.
    pub key: Option<(i32, i32)>,
}

/// The reply to a simple query: everything up to ReadyForQuery.
pub struct Reply {
    pub msgs: Vec<Msg>,
}

impl Reply {
    /// The first ErrorResponse.
    pub fn error(&self) -> Option<&Msg> {
        self.msgs.iter().find(|m| m.tag == b'E')
    }

    /// The transaction status of ReadyForQuery: b'I', b'T' or b'E'.
    pub fn status(&self) -> u8 {
        self.msgs
            .last()
            .filter(|m| m.tag == b'Z')
            .and_then(|m| m.body.first().copied())
            .unwrap_or(0)
    }

    /// CommandComplete tags, in order.
    pub fn tags(&self) -> Vec<String> {
        self.msgs
            .iter()
            .filter(|m| m.tag == b'C')
            .map(|m| {
                let end = m.body.iter().position(|&b| b == 0).unwrap_or(m.body.len());
                String::from_utf8_lossy(&m.body[..end]).into_owned()
            })
            .collect()
    }

    /// The first column of the first DataRow.
    pub fn value(&self) -> Option<String> {
        self.msgs
            .iter()
            .find(|m| m.tag == b'D')
            .and_then(|m| m.columns().into_iter().next().flatten())
    }

    /// Messages of NoticeResponses.
    pub fn notices(&self) -> Vec<String> {
        self.msgs
            .iter()
            .filter(|m| m.tag == b'N')
            .map(|m| m.fields().get(&b'M').cloned().unwrap_or_default())
            .collect()
    }
}

impl Conn {
    /// TCP connect to 127.0.0.1:port with read and write timeouts of `timeout`.
    pub fn connect(port: u16, timeout: Duration) -> Result<Conn, Fail> {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let s = TcpStream::connect_timeout(&addr, timeout).map_err(classify)?;
        s.set_read_timeout(Some(timeout)).map_err(Fail::Io)?;
        s.set_write_timeout(Some(timeout)).map_err(Fail::Io)?;
        s.set_nodelay(true).map_err(Fail::Io)?;
        Ok(Conn { s, key: None })
    }

    /// Connects and logs in (trust or cleartext password) up to the first
    /// ReadyForQuery.
    pub fn login(
        port: u16,
        user: &str,
        db: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Conn, Fail> {
        let mut c = Conn::connect(port, timeout)?;
        c.startup(user, db, password)?;
        Ok(c)
    }

    /// Sends the startup packet and answers authentication.
    pub fn startup(&mut self, user: &str, db: &str, password: Option<&str>) -> Result<(), Fail> {
        self.send(&msg::startup(&[("user", user), ("database", db)]))?;
        loop {
            let m = self.read_msg()?;
            match m.tag {
                b'R' => match m.int(0) {
                    0 => {}
                    3 => {
                        let Some(pw) = password else {
                            return Err(Fail::Io(io::Error::other(
                                "the pooler asked for a password",
                            )));
                        };
                        self.send(&msg::password(pw))?;
                    }
                    code => {
                        return Err(Fail::Io(io::Error::other(format!(
                            "unsupported auth request {code}"
                        ))))
                    }
                },
                b'K' => self.key = Some((m.int(0), m.int(4))),
                b'E' => return Err(Fail::Error(m)),
                b'Z' => return Ok(()),
                _ => {}
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Fail> {
        self.s.write_all(bytes).map_err(classify)
    }

    pub fn read_msg(&mut self) -> Result<Msg, Fail> {
        let mut hdr = [0u8; 5];
        self.s.read_exact(&mut hdr).map_err(classify)?;
        let len = i32::from_be_bytes(hdr[1..5].try_into().unwrap());
        if !(4..=64 * 1024 * 1024).contains(&len) {
            return Err(Fail::Io(io::Error::other(format!(
                "bad message length {len} for tag {:?}",
                hdr[0] as char
            ))));
        }
        let mut body = vec![0u8; len as usize - 4];
        self.s.read_exact(&mut body).map_err(classify)?;
        Ok(Msg { tag: hdr[0], body })
    }

    /// Reads up to and including ReadyForQuery. A connection closed after
    /// an ErrorResponse fails with that error.
    pub fn until_ready(&mut self) -> Result<Reply, Fail> {
        let mut msgs = Vec::new();
        loop {
            match self.read_msg() {
                Ok(m) => {
                    let done = m.tag == b'Z';
                    msgs.push(m);
                    if done {
                        return Ok(Reply { msgs });
                    }
                }
                Err(e) => {
                    return Err(match msgs.into_iter().find(|m| m.tag == b'E') {
                        Some(err) if !e.is_timeout() => Fail::Error(err),
                        _ => e,
                    })
                }
            }
        }
    }

    /// A simple query, answered up to ReadyForQuery. An ErrorResponse
    /// followed by ReadyForQuery is an `Ok` reply (see `Reply::error`).
    pub fn query(&mut self, sql: &str) -> Result<Reply, Fail> {
        self.send(&msg::query(sql))?;
        self.until_ready()
    }

    /// Says goodbye (Terminate) and closes.
    pub fn terminate(mut self) {
        let _ = self.s.write_all(&msg::terminate());
    }

    /// Closes with a TCP reset instead of a FIN (SO_LINGER 0): the most
    /// abrupt end a client can give its connection.
    pub fn reset(self) {
        use std::os::unix::io::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setting a socket option on a socket we own, with a valid
        // pointer and length.
        unsafe {
            libc::setsockopt(
                self.s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(self.s);
    }
}
