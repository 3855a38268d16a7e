//! A file's validators (RFC 9110 §8.8): the strong `ETag` made of inode, size
//! and modification time, the `Last-Modified` date, and parsing the HTTP dates
//! that conditional requests carry.

use crate::http::date::{format_http_date, HTTP_DATE_LEN};
use crate::sys::fs::Stat;

/// The longest ETag: `"` + three 16-digit hex numbers, two `-` + `"`.
const ETAG_MAX: usize = 2 + 3 * 16 + 2;

/// A file's validators, formatted once when its stat is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Validators {
    etag: [u8; ETAG_MAX],
    etag_len: u8,
    last_modified: [u8; HTTP_DATE_LEN],
    /// Seconds since the epoch of `last_modified`.
    pub modified: u64,
    /// `last_modified` is at least a second older than when it was taken, so it is
    /// a strong validator for `If-Range` (RFC 9110 §8.8.2.2).
    pub modified_strong: bool,
}

impl std::fmt::Debug for Validators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validators")
            .field("etag", &String::from_utf8_lossy(self.etag()))
            .field("last_modified", &String::from_utf8_lossy(self.last_modified()))
            .finish()
    }
}

impl Validators {
    /// The validators of a file with stat `st`, taken at `now` (seconds since the
    /// epoch): a modification time in the future is replaced by `now`, as RFC 9110
    /// §8.8.2.1 requires.
    pub fn of(st: &Stat, now: u64) -> Validators {
        let mut etag = [0u8; ETAG_MAX];
        let mut len = 0;
        let mtime_ns = (st.mtime as i128 * 1_000_000_000 + st.mtime_nsec as i128) as u64;
        etag[len] = b'"';
        len += 1;
        for (i, n) in [st.ino, st.size, mtime_ns].into_iter().enumerate() {
            if i > 0 {
                etag[len] = b'-';
                len += 1;
            }
            len += write_hex(n, &mut etag[len..]);
        }
        etag[len] = b'"';
        len += 1;
        let modified = (st.mtime.max(0) as u64).min(now);
        let mut last_modified = [0u8; HTTP_DATE_LEN];
        format_http_date(modified, &mut last_modified);
        Validators { etag, etag_len: len as u8, last_modified, modified, modified_strong: modified < now }
    }

    /// The strong entity tag, quotes included.
    pub fn etag(&self) -> &[u8] {
        &self.etag[..self.etag_len as usize]
    }

    /// The IMF-fixdate of the modification time.
    pub fn last_modified(&self) -> &[u8] {
        &self.last_modified
    }

    /// What preconditions are checked against.
    pub fn check(&self) -> Check<'_> {
        Check { etag: Some(self.etag()), modified: Some(self.modified), modified_strong: self.modified_strong }
    }
}

/// The validators preconditions are evaluated against: the file's own, or those
/// a handler sent instead (its `ETag`, its `Last-Modified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check<'a> {
    /// The entity tag with its quotes (and `W/` when weak); `None` when there is none.
    pub etag: Option<&'a [u8]>,
    /// The Last-Modified date in seconds since the epoch.
    pub modified: Option<u64>,
    /// The Last-Modified date is a strong validator.
    pub modified_strong: bool,
}

fn write_hex(mut n: u64, out: &mut [u8]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = DIGITS[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    out[..len].copy_from_slice(&tmp[i..]);
    len
}

/// Parses an HTTP date in any of the three forms recipients must accept (RFC
/// 9110 §5.6.7): IMF-fixdate, RFC 850 and asctime. Seconds since the epoch.
pub fn parse_http_date(text: &[u8]) -> Option<u64> {
    let s = text.trim_ascii();
    if s.len() == 29 && s[3] == b',' {
        // Sun, 06 Nov 1994 08:49:37 GMT
        if s[4] != b' ' || s[7] != b' ' || s[11] != b' ' || s[16] != b' ' || &s[25..] != b" GMT" {
            return None;
        }
        let day = digits(&s[5..7])?;
        let month = month(&s[8..11])?;
        let year = digits(&s[12..16])?;
        to_epoch(year, month, day, &s[17..25])
    } else if let Some(comma) = s.iter().position(|&b| b == b',') {
        // Sunday, 06-Nov-94 08:49:37 GMT
        let r = &s[comma + 1..];
        if r.len() != 23 || r[0] != b' ' || r[3] != b'-' || r[7] != b'-' || r[10] != b' ' || &r[19..] != b" GMT" {
            return None;
        }
        let day = digits(&r[1..3])?;
        let month = month(&r[4..7])?;
        let yy = digits(&r[8..10])?;
        let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
        to_epoch(year, month, day, &r[11..19])
    } else if s.len() == 24 {
        // Sun Nov  6 08:49:37 1994
        if s[3] != b' ' || s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
            return None;
        }
        let month = month(&s[4..7])?;
        let day = if s[8] == b' ' { digits(&s[9..10])? } else { digits(&s[8..10])? };
        let year = digits(&s[20..24])?;
        to_epoch(year, month, day, &s[11..19])
    } else {
        None
    }
}

fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &d| n * 10 + (d - b'0') as u64))
}

fn month(s: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    MONTHS.iter().position(|m| &m[..] == s).map(|i| i as u64 + 1)
}

fn to_epoch(year: u64, month: u64, day: u64, hms: &[u8]) -> Option<u64> {
    if hms.len() != 8 || hms[2] != b':' || hms[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&hms[0..2])?, digits(&hms[3..5])?, digits(&hms[6..8])?);
    if !(1970..=9999).contains(&year) || day == 0 || day > 31 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year as i64, month as i64, day as i64) as u64 * 86_400 + h * 3600 + m * 60 + s)
}

/// Howard Hinnant's civil-to-days algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs::FileKind;

    fn stat(ino: u64, size: u64, mtime: i64, nsec: u32) -> Stat {
        Stat { dev: 1, ino, size, mtime, mtime_nsec: nsec, kind: FileKind::Regular }
    }

    #[test]
    fn etag_changes_with_inode_size_and_mtime() {
        let v = Validators::of(&stat(0x1f, 1024, 784_111_777, 5), 800_000_000);
        assert_eq!(v.etag(), b"\"1f-400-ae1b981bc490a05\"");
        assert_eq!(v.last_modified(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(v.modified_strong);
        let base = Validators::of(&stat(1, 2, 3, 4), 10).etag().to_vec();
        for other in [stat(9, 2, 3, 4), stat(1, 9, 3, 4), stat(1, 2, 9, 4), stat(1, 2, 3, 9)] {
            assert_ne!(Validators::of(&other, 10).etag(), &base[..]);
        }
        let big = Validators::of(&stat(u64::MAX, u64::MAX, i64::MAX / 2_000_000_000, 999_999_999), u64::MAX);
        assert_eq!(big.etag().len(), big.etag_len as usize);
    }

    #[test]
    fn future_mtime_is_clamped_and_fresh_mtime_is_weak() {
        let v = Validators::of(&stat(1, 1, 2_000_000_000, 0), 1_000_000_000);
        assert_eq!(v.modified, 1_000_000_000);
        assert!(!v.modified_strong);
    }

    #[test]
    fn parses_the_three_date_forms() {
        let t = Some(784_111_777);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), t);
        assert_eq!(parse_http_date(b" Thu, 01 Jan 1970 00:00:00 GMT "), Some(0));
        assert_eq!(parse_http_date(b"Tue, 29 Feb 2000 00:00:00 GMT"), Some(951_782_400));
        let mut out = [0u8; HTTP_DATE_LEN];
        for secs in [0u64, 951_782_400, 1_798_761_599, 4_102_444_800] {
            format_http_date(secs, &mut out);
            assert_eq!(parse_http_date(&out), Some(secs));
        }
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in [
            &b""[..],
            b"yesterday",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 0x Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1960 08:49:37 GMT",
            b"Sunday, 06-Nov-94 08:49:37",
        ] {
            assert_eq!(parse_http_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
