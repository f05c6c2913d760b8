//! Hostile and broken clients: absurd lengths, garbage, silence, clients that never
//! read, and clients that vanish mid-transaction, mid-COPY or mid-result.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

fn frame(tag: u8, len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn first_error(msgs: &[Msg]) -> Option<&Msg> {
    msgs.iter().find(|m| m.tag == b'E')
}

fn code(m: &Msg) -> String {
    m.fields().get(&b'C').cloned().unwrap_or_default()
}

/// A length field of 1 GiB, or negative, is a protocol violation answered at once, with
/// nothing allocated for it; a length just under the limit is only a claim, and the
/// pooler grows its buffer with the bytes that actually arrive.
#[test]
fn absurd_message_lengths_get_08p01_without_allocating() {
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .set_raw("deny_statements", r#"["LOAD"]"#),
    );
    let rss_before = p.rss_kb();
    for len in [0x4000_0000u32, 0xffff_fff0, 3] {
        let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
        r.send(&frame(b'Q', len, b"SELECT 1"));
        let msgs = r.until_eof(Duration::from_secs(5)).expect("closed");
        let e = first_error(&msgs).unwrap_or_else(|| panic!("no error for {len:#x}{}", p.ctx()));
        assert_eq!(code(e), "08P01", "{len:#x}: {e}");
    }
    // Claims of almost 1 GiB each, from 8 clients, with a few bytes sent: a Query the
    // statement rules must see whole.
    let mut claims = Vec::new();
    for _ in 0..8 {
        let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
        r.send(&frame(b'Q', 0x3fff_0000, b"SELECT "));
        claims.push(r);
    }
    std::thread::sleep(Duration::from_millis(300));
    let grown = p.rss_kb().saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "the pooler grew by {grown} kB for 8 claimed messages{}",
        p.ctx()
    );
    drop(claims);
    let mut c = p.client();
    assert_eq!(one(&mut c, "SELECT 'alive'"), "alive");
}

#[test]
fn garbage_instead_of_a_startup_packet_is_refused_cleanly() {
    let p = Pooler::start(&Cfg::transaction().auth("trust"));
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef][..],
        &[0xff; 64][..],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(garbage).unwrap();
        let mut reply = Vec::new();
        let t0 = Instant::now();
        let _ = s.read_to_end(&mut reply);
        assert!(t0.elapsed() < Duration::from_secs(4), "hung on {garbage:?}");
        // PostgreSQL's answers: 08P01 for a bad length, 0A000 for an unknown version.
        if let Some(pos) = reply.iter().position(|&b| b == b'E') {
            let text = String::from_utf8_lossy(&reply[pos..]);
            assert!(
                text.contains("FATAL") && (text.contains("08P01") || text.contains("0A000")),
                "{text}"
            );
        }
    }
    let mut c = p.client();
    assert_eq!(one(&mut c, "SELECT 'alive'"), "alive");
}

#[test]
fn silent_clients_are_closed_after_client_login_timeout() {
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .set("client_login_timeout", "1s"),
    );
    let mut silent = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    // Half a startup packet, then nothing.
    let mut half = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    half.write_all(&[0, 0, 0, 40, 0, 3]).unwrap();
    let t0 = Instant::now();
    for s in [&mut silent, &mut half] {
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}{}",
        p.ctx()
    );
    assert!(p.log().contains("client_login_timeout"), "{}", p.ctx());
}

/// A client that asks for a big result and reads none of it: the pooler's buffer for it
/// stays bounded, other clients go on, and after client_write_timeout it is closed
/// together with its server, whose slot the pool gets back.
#[test]
fn a_client_that_never_reads_is_bounded_and_then_closed() {
    let p = Pooler::start(
        &Cfg::transaction()
            .pool_size(2)
            .auth("trust")
            .set("client_write_timeout", "2s"),
    );
    let rss_before = p.rss_kb();
    let mut hog = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    hog.send(&msg::query(
        "SELECT repeat('x', 1000) FROM generate_series(1, 200000)",
    ));
    std::thread::sleep(Duration::from_millis(800));
    let grown = p.rss_kb().saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "grew by {grown} kB{}", p.ctx());
    let mut other = p.client();
    assert_eq!(one(&mut other, "SELECT 'unaffected'"), "unaffected");
    let closed = poll(Duration::from_secs(6), || {
        p.log().contains("client_write_timeout").then_some(())
    });
    assert!(
        closed.is_some(),
        "the stalled client was not closed{}",
        p.ctx()
    );
    // Its server went with it; both slots serve again.
    let mut a = p.client();
    let mut b = p.client();
    a.batch_execute("BEGIN").unwrap();
    b.batch_execute("BEGIN").unwrap();
    assert_eq!(one(&mut a, "SELECT 'a'"), "a");
    assert_eq!(one(&mut b, "SELECT 'b'"), "b");
}

/// After a client vanishes mid-transaction, mid-COPY or mid-result, the next client on
/// the same one-server pool finds no open transaction, temp table or prepared statement.
#[test]
fn a_vanished_client_leaves_nothing_behind() {
    let table = cluster().new_table("vanish", "n int");
    for mode in ["session", "transaction"] {
        let p = Pooler::start(&Cfg::new().mode(mode).pool_size(1).auth("trust"));
        let check = |what: &str| {
            let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
            let reply = r.query(
                "SELECT (SELECT count(*) FROM pg_prepared_statements)::text || ',' || \
                 coalesce(to_regclass('pg_temp.leftover')::text, 'none')",
            );
            assert_eq!(
                Raw::values(&reply),
                ["0,none"],
                "{mode}, after {what}{}",
                p.ctx()
            );
            assert_eq!(
                reply.last().map(|m| m.body[0]),
                Some(b'I'),
                "{mode}, {what}"
            );
            let rows = Raw::values(&r.query(&format!("SELECT count(*) FROM {table}")));
            assert_eq!(
                rows,
                ["0"],
                "{mode}, after {what}: rows of a lost transaction"
            );
        };
        let vanish = |r: Raw| {
            let _ = r.s.shutdown(Shutdown::Both);
        };

        let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
        r.query("BEGIN");
        r.query("CREATE TEMP TABLE leftover (n int)");
        r.query("PREPARE leftover_stmt AS SELECT 1");
        r.query(&format!("INSERT INTO {table} VALUES (1)"));
        vanish(r);
        check("a transaction");

        let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
        r.send(&msg::query(&format!("COPY {table} FROM STDIN")));
        let _copy_in = r.read_msg().unwrap();
        r.send(&msg::copy_data(b"1\n2\n"));
        vanish(r);
        check("a COPY");

        let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
        r.send(&msg::query("SELECT generate_series(1, 5000000)"));
        for _ in 0..10 {
            let _ = r.read_msg();
        }
        vanish(r);
        check("a result");
    }
}

/// A client that resets the connection in the middle of the TLS handshake costs the
/// pooler nothing but that connection.
#[test]
fn reset_during_the_tls_handshake_is_survived() {
    let c = certs();
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .extra(&format!(
                "[tls]\nclient_tls_mode = \"allow\"\nclient_tls_cert_file = {:?}\nclient_tls_key_file = {:?}\n",
                c.server.crt.to_str().unwrap(),
                c.server.key.to_str().unwrap()
            )),
    );
    let fds_before = p.open_fds();
    for partial in [&[][..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&msg::ssl_request()).unwrap();
        let mut answer = [0u8];
        s.read_exact(&mut answer).unwrap();
        assert_eq!(answer[0], b'S');
        s.write_all(partial).unwrap();
        // SO_LINGER 0: close sends RST instead of FIN.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: a valid socket and a correctly sized linger struct.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(s);
    }
    let released = poll(Duration::from_secs(5), || {
        (p.open_fds() <= fds_before).then_some(())
    });
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        released.is_some(),
        "descriptors leaked: {fds_before} before, now {fds:?}{}",
        p.ctx()
    );
    let mut client = p.client();
    assert_eq!(one(&mut client, "SELECT 'alive'"), "alive");
}

/// Messages the pooler must see whole (a Parse it renames in transaction mode, a Query
/// the statement rules check) may arrive in many pieces, slowly: the server waits linked
/// for the rest instead of going back and forth to the pool.
#[test]
fn whole_messages_arriving_in_pieces() {
    let p = Pooler::start(
        &Cfg::transaction()
            .pool_size(1)
            .auth("trust")
            .set_raw("deny_statements", r#"["LOAD"]"#),
    );
    let big = "x".repeat(300_000);
    let mut c = p.connect(TRUST_USER, None, "postgres");
    let st = c.prepare(&format!("SELECT length('{big}') AS n")).unwrap();
    let n: i32 = c.query_one(&st, &[]).unwrap().get(0);
    assert_eq!(n, 300_000);
    let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    let query = msg::query(&format!("SELECT length('{big}')"));
    for piece in query.chunks(50_000) {
        r.send(piece);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(Raw::values(&r.until_ready().unwrap()), ["300000"]);
    assert_eq!(one(&mut c, "SELECT 'alive'"), "alive");
}
