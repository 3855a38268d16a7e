//! The `Date` header value, formatted at most once a second per worker, and
//! the lines every response carries after its status line.

use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is always 29 bytes.
pub const HTTP_DATE_LEN: usize = 29;

/// `Date: ` + an IMF-fixdate + CRLF.
pub const DATE_LINE_LEN: usize = DATE_AT + HTTP_DATE_LEN + 2;

/// A per-worker cache of the current date; `refresh` is called once per loop turn
/// and formats only when the second has changed. Owned by one thread: no locking.
///
/// It also keeps the `Date` line followed by the `Server` line, so that a
/// response copies both at once (`common_lines`).
pub struct DateCache {
    second: u64,
    /// Changes whenever `lines` does, so that copies made of them can tell
    /// they are stale (`image::ImageCache`).
    version: u64,
    /// `Date: …\r\n` then the `Server` line (empty when no name is sent);
    /// the date itself is at `DATE_AT`.
    lines: Vec<u8>,
}

/// Where the date starts in `DateCache::lines` (after `Date: `).
const DATE_AT: usize = 6;

impl Default for DateCache {
    fn default() -> Self {
        let mut lines = Vec::with_capacity(DATE_LINE_LEN + 64);
        lines.extend_from_slice(b"Date: ");
        lines.extend_from_slice(&[b' '; HTTP_DATE_LEN]);
        lines.extend_from_slice(b"\r\n");
        let mut cache = DateCache { second: u64::MAX, version: 0, lines };
        cache.refresh();
        cache
    }
}

impl DateCache {
    /// Re-reads the clock; formats only when the second changed.
    pub fn refresh(&mut self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if now != self.second {
            self.second = now;
            let mut text = [0u8; HTTP_DATE_LEN];
            format_http_date(now, &mut text);
            self.lines[DATE_AT..DATE_AT + HTTP_DATE_LEN].copy_from_slice(&text);
            self.version += 1;
        }
    }

    /// The formatted date, valid until the next `refresh`.
    pub fn get(&self) -> &[u8] {
        &self.lines[DATE_AT..DATE_AT + HTTP_DATE_LEN]
    }

    /// Sets the `Server` line (`Server: NAME\r\n`, or empty) that follows the date.
    pub fn set_server_line(&mut self, server_line: &[u8]) {
        self.lines.truncate(DATE_LINE_LEN);
        self.lines.extend_from_slice(server_line);
        self.version += 1;
    }

    /// The `Date` line followed by the `Server` line.
    pub fn common_lines(&self) -> &[u8] {
        &self.lines
    }

    /// Changes whenever `common_lines` do (the composer's images are
    /// rendered again then).
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// Formats seconds since the Unix epoch as an IMF-fixdate into `out`.
pub fn format_http_date(unix_secs: u64, out: &mut [u8; HTTP_DATE_LEN]) {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let weekday = DAYS[(days % 7) as usize];
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    out[0..3].copy_from_slice(weekday);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day as u64));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    let y = year as u64;
    out[12..16].copy_from_slice(&[
        b'0' + (y / 1000 % 10) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
    ]);
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(secs_of_day / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(secs_of_day / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(secs_of_day % 60));
    out[25..29].copy_from_slice(b" GMT");
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        let mut out = [0u8; HTTP_DATE_LEN];
        format_http_date(784_111_777, &mut out);
        assert_eq!(&out, b"Sun, 06 Nov 1994 08:49:37 GMT");
        format_http_date(0, &mut out);
        assert_eq!(&out, b"Thu, 01 Jan 1970 00:00:00 GMT");
        format_http_date(1_798_761_599, &mut out);
        assert_eq!(&out, b"Thu, 31 Dec 2026 23:59:59 GMT");
        format_http_date(951_782_400, &mut out);
        assert_eq!(&out, b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn common_lines_are_the_date_line_then_the_server_line() {
        let mut cache = DateCache::default();
        let date = cache.get().to_vec();
        assert_eq!(date.len(), HTTP_DATE_LEN);
        assert!(date.ends_with(b" GMT"), "{:?}", String::from_utf8_lossy(&date));
        let date_line = [&b"Date: "[..], &date, b"\r\n"].concat();
        assert_eq!(cache.common_lines(), &date_line[..]);
        cache.set_server_line(b"Server: a\r\n");
        assert_eq!(cache.common_lines(), &[&date_line[..], b"Server: a\r\n"].concat()[..]);
        // A reload replaces the line; an empty name sends none.
        cache.set_server_line(b"Server: bb\r\n");
        assert!(cache.common_lines().ends_with(b"\r\nServer: bb\r\n"));
        cache.set_server_line(b"");
        assert_eq!(cache.common_lines().len(), DATE_LINE_LEN);
        // A refresh rewrites the date in place, the server line stays.
        cache.set_server_line(b"Server: a\r\n");
        let version = cache.compose_env().version;
        cache.second = 0;
        cache.refresh();
        assert_ne!(cache.compose_env().version, version, "a new second is a new version");
        let version = cache.compose_env().version;
        cache.refresh();
        assert_eq!(cache.compose_env().version, version, "the same second is the same version");
        cache.set_server_line(b"Server: a\r\n");
        assert_ne!(cache.compose_env().version, version, "a new server line is a new version");
        assert_eq!(&cache.common_lines()[..DATE_AT], b"Date: ");
        assert!(cache.common_lines().ends_with(b" GMT\r\nServer: a\r\n"));
    }
}
