//! Pre-rendered status lines: the composer copies one slice per response.

/// The reason phrase of a status code, or `None` for codes the table does not name.
pub fn reason(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        511 => "Network Authentication Required",
        _ => return None,
    })
}

/// Status lines for every code from 100 to 599, rendered once per process.
pub struct StatusTable {
    lines: Vec<Box<[u8]>>,
}

impl StatusTable {
    fn build() -> StatusTable {
        let lines = (100u16..600)
            .map(|code| {
                let phrase = reason(code).unwrap_or("");
                format!("HTTP/1.1 {code} {phrase}\r\n").into_bytes().into_boxed_slice()
            })
            .collect();
        StatusTable { lines }
    }

    /// The shared table, built on first use.
    pub fn get() -> &'static StatusTable {
        static TABLE: std::sync::OnceLock<StatusTable> = std::sync::OnceLock::new();
        TABLE.get_or_init(StatusTable::build)
    }

    /// `HTTP/1.1 CODE REASON\r\n` for `code` in 100..=599.
    pub fn line(&self, code: u16) -> Option<&[u8]> {
        let index = code.checked_sub(100)? as usize;
        self.lines.get(index).map(|l| &l[..])
    }
}

/// Whether a response with this status never carries a body (RFC 9110 §6.4.1).
pub fn forbids_body(code: u16) -> bool {
    code < 200 || code == 204 || code == 304
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_and_unknown_codes() {
        let t = StatusTable::get();
        assert_eq!(t.line(200).unwrap(), b"HTTP/1.1 200 OK\r\n");
        assert_eq!(t.line(431).unwrap(), b"HTTP/1.1 431 Request Header Fields Too Large\r\n");
        assert_eq!(t.line(299).unwrap(), b"HTTP/1.1 299 \r\n");
        assert!(t.line(99).is_none());
        assert!(t.line(600).is_none());
    }
}
