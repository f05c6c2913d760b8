//! Cryptographically secure random bytes for SCRAM nonces and salts.
//!
//! If no entropy source works at all the process aborts: continuing with a
//! predictable buffer would silently turn SCRAM nonces into replayable
//! constants, which is worse than going down loudly. In practice this only
//! happens in a sandbox that denies both `getrandom(2)` and `/dev/urandom`,
//! where std's own `HashMap` seeding fails too.

use std::fs::File;
use std::io::Read;

/// Fills `buf` with bytes from the kernel CSPRNG.
///
/// Uses `getrandom(2)` (retrying on `EINTR` and short reads), then falls back
/// to `/dev/urandom` for whatever is still missing (old kernels return
/// `ENOSYS`; seccomp filters may return `EPERM`). Aborts the process, after a
/// message on stderr, only if both sources fail.
pub fn fill_random(buf: &mut [u8]) {
    if buf.len() <= RESERVE_MAX_TAKE {
        take_from_reserve(buf);
    } else {
        fill_from_kernel(buf);
    }
}

/// Small requests (a cancel key, an md5 salt, a nonce: several per login) come out of
/// a per-thread reserve filled by one getrandom(2) per 4 KiB instead of one each.
const RESERVE_LEN: usize = 4096;
const RESERVE_MAX_TAKE: usize = 64;

struct Reserve {
    bytes: [u8; RESERVE_LEN],
    /// Bytes before this have been handed out (and wiped).
    used: usize,
}

thread_local! {
    static RESERVE: std::cell::RefCell<Reserve> = const {
        std::cell::RefCell::new(Reserve { bytes: [0; RESERVE_LEN], used: RESERVE_LEN })
    };
}

fn take_from_reserve(buf: &mut [u8]) {
    RESERVE.with(|r| {
        let mut r = r.borrow_mut();
        if RESERVE_LEN - r.used < buf.len() {
            fill_from_kernel(&mut r.bytes);
            r.used = 0;
        }
        let start = r.used;
        let taken = &mut r.bytes[start..start + buf.len()];
        buf.copy_from_slice(taken);
        // Handed-out bytes do not stay behind in memory.
        taken.fill(0);
        r.used += buf.len();
    });
}

fn fill_from_kernel(buf: &mut [u8]) {
    let done = fill_getrandom(buf);
    let Some(rest) = buf.get_mut(done..) else {
        return;
    };
    if rest.is_empty() || fill_urandom(rest) {
        return;
    }
    eprintln!("pooler: no entropy source available (getrandom and /dev/urandom failed); aborting");
    std::process::abort();
}

/// Returns how many leading bytes of `buf` were filled.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn fill_getrandom(buf: &mut [u8]) -> usize {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..) {
        if rest.is_empty() {
            break;
        }
        // SAFETY: `rest` is a live, writable region of exactly `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            // A zero-length result for a non-empty request would loop forever;
            // treat it as a broken source and let /dev/urandom finish the job.
            Ok(0) => break,
            Ok(n) => done += n.min(rest.len()),
            Err(_) => {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break;
            }
        }
    }
    done
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn fill_getrandom(_buf: &mut [u8]) -> usize {
    0
}

fn fill_urandom(buf: &mut [u8]) -> bool {
    // read_exact already retries EINTR and short reads.
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_differs() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fill_random(&mut a);
        fill_random(&mut b);
        assert_ne!(a, [0u8; 32]);
        assert_ne!(a, b);
    }

    #[test]
    fn the_reserve_never_repeats_itself() {
        let mut seen = std::collections::HashSet::new();
        // More than one reserve's worth, so a refill happens in between.
        for _ in 0..(2 * RESERVE_LEN / 8) {
            let mut key = [0u8; 8];
            fill_random(&mut key);
            assert!(seen.insert(key), "a random 8-byte key came out twice");
        }
    }

    #[test]
    fn empty_and_large_buffers() {
        fill_random(&mut []);
        let mut big = vec![0u8; 1 << 20];
        fill_random(&mut big);
        // 1 MiB of zeros from a CSPRNG is not going to happen.
        assert!(big.iter().any(|&x| x != 0));
    }

    #[test]
    fn urandom_fallback_works() {
        let mut a = [0u8; 64];
        assert!(fill_urandom(&mut a));
        assert_ne!(a, [0u8; 64]);
    }
}
