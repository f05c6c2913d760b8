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
