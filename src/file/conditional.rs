//! Conditional requests (RFC 9110 §13): `If-Match`, `If-Unmodified-Since`,
//! `If-None-Match` and `If-Modified-Since`, evaluated in the order §13.2.2 gives.
//! `If-Range` belongs to range handling (see `range.rs`), but its entity-tag and
//! date comparisons live here.

use super::validator::{parse_http_date, Check};
use super::Fields;

/// What the preconditions decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the representation (range handling may still apply).
    Proceed,
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// Evaluates the preconditions of a request for a representation with
/// validators `v` at `now` (seconds since the epoch). `get_or_head` says whether
/// the method is GET or HEAD, for which a false `If-None-Match` means 304.
pub fn evaluate(fields: &Fields<'_>, get_or_head: bool, v: &Check<'_>, now: u64) -> Precondition {
    // 1. If-Match, with the strong comparison.
    if fields.has("if-match") {
        if !list_matches(fields.values("if-match"), v.etag, Compare::Strong) {
            return Precondition::Failed;
        }
    } else if let (Some(date), Some(modified)) = (single_date(fields, "if-unmodified-since"), v.modified) {
        // 2. If-Unmodified-Since, only without If-Match.
        if modified > date {
            return Precondition::Failed;
        }
    }
    // 3. If-None-Match, with the weak comparison.
    if fields.has("if-none-match") {
        if list_matches(fields.values("if-none-match"), v.etag, Compare::Weak) {
            return if get_or_head { Precondition::NotModified } else { Precondition::Failed };
        }
    } else if get_or_head {
        // 4. If-Modified-Since, only without If-None-Match; a date in the future
        //    is invalid and ignored (§13.1.3).
        if let (Some(date), Some(modified)) = (single_date(fields, "if-modified-since"), v.modified) {
            if date <= now && modified <= date {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// Whether an `If-Range` value allows a partial response for a representation
/// with validators `v` (RFC 9110 §13.1.5): an entity tag must match strongly; a
/// date must equal a Last-Modified that is itself strong.
pub fn if_range_holds(value: &[u8], v: &Check<'_>) -> bool {
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let mut tags = EntityTags { rest: value };
        return match (tags.next(), tags.next(), v.etag) {
            (Some(Tag::Tag { weak: false, opaque }), None, Some(etag)) => opaque == etag,
            _ => false,
        };
    }
    match (parse_http_date(value), v.modified) {
        (Some(date), Some(modified)) => v.modified_strong && date == modified,
        _ => false,
    }
}

/// The value of a date field that appears exactly once and parses.
fn single_date(fields: &Fields<'_>, name: &str) -> Option<u64> {
    let mut values = fields.values(name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_http_date(first)
}

#[derive(Clone, Copy)]
enum Compare {
    Strong,
    Weak,
}

/// Whether an entity-tag list (spread over one or more field lines) is `*` or
/// contains a tag equal to `etag` under the comparison.
fn list_matches<'a>(values: impl Iterator<Item = &'a [u8]>, etag: Option<&[u8]>, compare: Compare) -> bool {
    for value in values {
        for tag in (EntityTags { rest: value }) {
            match tag {
                Tag::Any => return true,
                Tag::Tag { weak, opaque } => {
                    // Our own tag may be weak too (a handler's): strip its W/.
                    let (ours_weak, ours) = match etag {
                        Some(e) => match e.strip_prefix(b"W/") {
                            Some(rest) => (true, rest),
                            None => (false, e),
                        },
                        None => continue,
                    };
                    let ok = match compare {
                        Compare::Strong => !weak && !ours_weak && opaque == ours,
                        Compare::Weak => opaque == ours,
                    };
                    if ok {
                        return true;
                    }
                }
            }
        }
    }
    false
}

#[derive(Debug, PartialEq, Eq)]
enum Tag<'a> {
    Any,
    /// `opaque` keeps its quotes, like our own ETag.
    Tag {
        weak: bool,
        opaque: &'a [u8],
    },
}

/// Iterates `#( "*" / entity-tag )`; a malformed member ends the list (what came
/// before still counts). Commas inside quotes are part of a tag.
struct EntityTags<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for EntityTags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let start = self.rest.iter().position(|&b| !matches!(b, b' ' | b'\t' | b','))?;
        let s = &self.rest[start..];
        if s[0] == b'*' {
            self.rest = &s[1..];
            return Some(Tag::Any);
        }
        let (weak, s) = match s.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, s),
        };
        if s.first() != Some(&b'"') {
            self.rest = &[];
            return None;
        }
        let Some(close) = s[1..].iter().position(|&b| b == b'"') else {
            self.rest = &[];
            return None;
        };
        let opaque = &s[..close + 2];
        self.rest = &s[close + 2..];
        Some(Tag::Tag { weak, opaque })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::validator::Validators;
    use crate::sys::fs::{FileKind, Stat};

    const MTIME: u64 = 784_111_777;
    const NOW: u64 = 800_000_000;
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn validators() -> Validators {
        let st = Stat { dev: 1, ino: 0xab, size: 10, mtime: MTIME as i64, mtime_nsec: 0, kind: FileKind::Regular };
        Validators::of(&st, NOW)
    }

    fn eval(pairs: &[(&'static str, &str)], get: bool) -> Precondition {
        let headers: Vec<httparse::Header<'_>> =
            pairs.iter().map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() }).collect();
        evaluate(&Fields::new(&headers), get, &validators().check(), NOW)
    }

    fn etag() -> String {
        String::from_utf8(validators().etag().to_vec()).unwrap()
    }

    use Precondition::*;

    #[test]
    fn if_none_match_gives_304_for_get_and_412_otherwise() {
        let e = etag();
        assert_eq!(eval(&[("If-None-Match", &e)], true), NotModified);
        assert_eq!(eval(&[("If-None-Match", &format!("W/{e}"))], true), NotModified);
        assert_eq!(eval(&[("If-None-Match", &format!("\"x\", \"a,b\" ,{e}"))], true), NotModified);
        assert_eq!(eval(&[("If-None-Match", "\"other\""), ("If-None-Match", &e)], true), NotModified);
        assert_eq!(eval(&[("If-None-Match", "*")], true), NotModified);
        assert_eq!(eval(&[("If-None-Match", "\"other\"")], true), Proceed);
        assert_eq!(eval(&[("If-None-Match", &e)], false), Failed);
    }

    #[test]
    fn if_modified_since_gives_304_unless_if_none_match_is_present() {
        assert_eq!(eval(&[("If-Modified-Since", LM)], true), NotModified);
        assert_eq!(eval(&[("If-Modified-Since", AFTER)], true), NotModified);
        assert_eq!(eval(&[("If-Modified-Since", BEFORE)], true), Proceed);
        // If-None-Match wins, whichever way it goes.
        assert_eq!(eval(&[("If-None-Match", "\"other\""), ("If-Modified-Since", LM)], true), Proceed);
        assert_eq!(eval(&[("If-Modified-Since", BEFORE), ("If-None-Match", &etag())], true), NotModified);
        // Ignored: not GET/HEAD, malformed, a future date, two fields.
        assert_eq!(eval(&[("If-Modified-Since", LM)], false), Proceed);
        assert_eq!(eval(&[("If-Modified-Since", "garbage")], true), Proceed);
        assert_eq!(eval(&[("If-Modified-Since", "Sun, 06 Nov 2094 08:49:37 GMT")], true), Proceed);
        assert_eq!(eval(&[("If-Modified-Since", LM), ("If-Modified-Since", LM)], true), Proceed);
    }

    #[test]
    fn if_match_and_if_unmodified_since_give_412() {
        let e = etag();
        assert_eq!(eval(&[("If-Match", &e)], true), Proceed);
        assert_eq!(eval(&[("If-Match", "*")], true), Proceed);
        assert_eq!(eval(&[("If-Match", "\"other\"")], true), Failed);
        assert_eq!(eval(&[("If-Match", &format!("W/{e}"))], true), Failed);
        assert_eq!(eval(&[("If-Unmodified-Since", BEFORE)], true), Failed);
        assert_eq!(eval(&[("If-Unmodified-Since", LM)], true), Proceed);
        assert_eq!(eval(&[("If-Unmodified-Since", "garbage")], true), Proceed);
        // If-Match takes precedence over If-Unmodified-Since.
        assert_eq!(eval(&[("If-Match", &e), ("If-Unmodified-Since", BEFORE)], true), Proceed);
        // A failed If-Match beats a matching If-None-Match.
        assert_eq!(eval(&[("If-Match", "\"other\""), ("If-None-Match", &e)], true), Failed);
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let v = validators();
        let c = v.check();
        assert!(if_range_holds(v.etag(), &c));
        assert!(!if_range_holds(format!("W/{}", etag()).as_bytes(), &c));
        assert!(!if_range_holds(b"\"other\"", &c));
        assert!(if_range_holds(LM.as_bytes(), &c));
        assert!(!if_range_holds(BEFORE.as_bytes(), &c));
        assert!(!if_range_holds(b"nonsense", &c));
        let st = Stat { dev: 1, ino: 1, size: 1, mtime: NOW as i64, mtime_nsec: 0, kind: FileKind::Regular };
        let fresh = Validators::of(&st, NOW);
        assert!(!if_range_holds(fresh.last_modified(), &fresh.check()), "a Last-Modified of this very second is weak");
    }

    #[test]
    fn a_handlers_weak_etag_matches_only_weakly() {
        let headers = [httparse::Header { name: "If-None-Match", value: b"\"v1\"" }];
        let weak = Check { etag: Some(b"W/\"v1\""), modified: None, modified_strong: false };
        assert_eq!(evaluate(&Fields::new(&headers), true, &weak, NOW), NotModified);
        let headers = [httparse::Header { name: "If-Match", value: b"\"v1\"" }];
        assert_eq!(evaluate(&Fields::new(&headers), true, &weak, NOW), Failed);
        let none = Check { etag: None, modified: None, modified_strong: false };
        assert_eq!(evaluate(&Fields::new(&headers), true, &none, NOW), Failed);
        let headers = [httparse::Header { name: "If-Modified-Since", value: LM.as_bytes() }];
        assert_eq!(evaluate(&Fields::new(&headers), true, &none, NOW), Proceed);
    }

    #[test]
    fn entity_tag_lists_parse() {
        let tags: Vec<_> = (EntityTags { rest: b" \"a\", W/\"b\" ,*,\"c,d\"" }).collect();
        assert_eq!(
            tags,
            vec![
                Tag::Tag { weak: false, opaque: b"\"a\"" },
                Tag::Tag { weak: true, opaque: b"\"b\"" },
                Tag::Any,
                Tag::Tag { weak: false, opaque: b"\"c,d\"" },
            ]
        );
        assert_eq!((EntityTags { rest: b"\"a\", bad, \"c\"" }).count(), 1);
        assert_eq!((EntityTags { rest: b"\"unterminated" }).count(), 0);
    }
}
