//! Splitting a request target into path and query, and percent-decoding the path.

/// The path and query of a request target, as slices of it.
/// Origin-form `/a?b`, absolute-form `http://host/a?b` (path `/` when empty),
/// asterisk-form `*`. Returns `None` for anything else.
pub fn split_target(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = if target.first() == Some(&b'/') || target == b"*" {
        target
    } else {
        let after_scheme = strip_scheme(target)?;
        match after_scheme.iter().position(|&b| b == b'/' || b == b'?') {
            Some(i) => &after_scheme[i..],
            None => b"",
        }
    };
    let (path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    Some((if path.is_empty() { b"/" } else { path }, query))
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    let lower_starts =
        |prefix: &[u8]| target.len() >= prefix.len() && target[..prefix.len()].eq_ignore_ascii_case(prefix);
    let rest = if lower_starts(b"http://") {
        &target[7..]
    } else if lower_starts(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    // An absolute-form target needs a non-empty authority.
    match rest.first() {
        None | Some(b'/') | Some(b'?') => None,
        _ => Some(rest),
    }
}

/// A `%` not followed by two hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedEscape;

/// Appends the percent-decoded `path` to `out`. Fails on a malformed escape.
/// The decoded bytes may contain `/`, `\0` or `..` from escapes: callers that map
/// paths to files must check (the static-file code does).
pub fn decode_path_into(path: &[u8], out: &mut Vec<u8>) -> Result<(), MalformedEscape> {
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let hi = path.get(i + 1).and_then(|&c| hex_value(c)).ok_or(MalformedEscape)?;
            let lo = path.get(i + 2).and_then(|&c| hex_value(c)).ok_or(MalformedEscape)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(())
}

/// The value of one hex digit.
pub fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_targets() {
        assert_eq!(split_target(b"/a/b?x=1&y"), Some((&b"/a/b"[..], &b"x=1&y"[..])));
        assert_eq!(split_target(b"/"), Some((&b"/"[..], &b""[..])));
        assert_eq!(split_target(b"http://h:80/p?q"), Some((&b"/p"[..], &b"q"[..])));
        assert_eq!(split_target(b"HTTP://h"), Some((&b"/"[..], &b""[..])));
        assert_eq!(split_target(b"http://h?q"), Some((&b"/"[..], &b"q"[..])));
        assert_eq!(split_target(b"*"), Some((&b"*"[..], &b""[..])));
        assert_eq!(split_target(b"example.com:443"), None);
        assert_eq!(split_target(b"http:///x"), None);
    }

    #[test]
    fn decodes_escapes() {
        let mut out = Vec::new();
        decode_path_into(b"/a%20b%2Fc%41", &mut out).unwrap();
        assert_eq!(out, b"/a b/cA");
        assert!(decode_path_into(b"/%4", &mut Vec::new()).is_err());
        assert!(decode_path_into(b"/%zz", &mut Vec::new()).is_err());
    }
}
