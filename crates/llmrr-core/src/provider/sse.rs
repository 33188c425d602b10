//! A server-sent-events parser (the WHATWG event-stream format) fed with arbitrary byte
//! chunks: an event, a line, a line ending or a UTF-8 character may be split anywhere.
//!
//! Incremental: each byte is scanned once, however the line is split; and bounded: a line or
//! an event longer than [`MAX_LINE_BYTES`] stops the parser ([`SseParser::overflowed`]), so an
//! upstream cannot make the gateway buffer without limit.

/// Longest line, and longest event, accepted (a chunk of an LLM stream is a few hundred bytes;
/// a whole tool call's arguments in one event stay far below this).
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when given.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a line ending.
    scanned: usize,
    /// Bytes searched in all, for the test that each byte is searched once.
    #[cfg(test)]
    searched: usize,
    overflowed: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// A line or an event was longer than [`MAX_LINE_BYTES`]: the parser stopped there.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Feed bytes; complete events are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        if self.overflowed {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            let from = start.max(self.scanned);
            let found = self.buf[from..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r');
            #[cfg(test)]
            {
                self.searched += found.map_or(self.buf.len() - from, |o| o + 1);
            }
            let Some(offset) = found else { break };
            let end = from + offset;
            let skip = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    // A lone '\r' at the end may be the first half of "\r\n": wait.
                    None => break,
                    Some(b'\n') => 2,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let line = self.buf[start..end].to_vec();
            self.line(&line, out);
            start = end + skip;
            self.scanned = start;
        }
        self.buf.drain(..start);
        // What is left has no line ending (but maybe a trailing '\r'): never scan it again.
        self.scanned = self.buf.len().saturating_sub(1);
        if self.buf.len() > MAX_LINE_BYTES || self.data.len() > MAX_LINE_BYTES {
            self.overflowed = true;
            self.buf = Vec::new();
            self.data = Vec::new();
        }
    }

    /// The stream has ended: a last line without its terminator still counts (an event that
    /// was never followed by a blank line is dropped, as the format says).
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = rest.strip_suffix(b"\r").unwrap_or(&rest).to_vec();
            self.line(&line, out);
        }
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                if self.data.last() == Some(&b'\n') {
                    self.data.pop();
                }
                out.push(SseEvent {
                    event: self.event.take(),
                    data: String::from_utf8_lossy(&self.data).into_owned(),
                });
            }
            self.data.clear();
            self.has_data = false;
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return; // a comment (keep-alive)
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // id, retry and unknown fields do not matter here
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts {
            p.push(&input[last..c], &mut out);
            last = c;
        }
        p.push(&input[last..], &mut out);
        p.finish(&mut out);
        out
    }

    #[test]
    fn survives_every_split_point() {
        let input = "event: message_start\r\ndata: {\"a\":\"h\u{e9}llo\"}\r\n\r\n: keep-alive\n\ndata: one\ndata: two\n\ndata: [DONE]\n\n"
            .as_bytes();
        let want = vec![
            SseEvent {
                event: Some("message_start".into()),
                data: "{\"a\":\"h\u{e9}llo\"}".into(),
            },
            SseEvent {
                event: None,
                data: "one\ntwo".into(),
            },
            SseEvent {
                event: None,
                data: "[DONE]".into(),
            },
        ];
        assert_eq!(parse_in_pieces(input, &[]), want);
        for i in 0..=input.len() {
            assert_eq!(parse_in_pieces(input, &[i]), want, "split at {i}");
            for j in i..=input.len() {
                assert_eq!(parse_in_pieces(input, &[i, j]), want, "split at {i},{j}");
            }
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(parse_in_pieces(input, &cuts), want);
    }

    #[test]
    fn issue15_an_endless_line_is_bounded_and_scanned_once() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let piece = vec![b'x'; 64 * 1024];
        let mut pushed = 0;
        while !p.overflowed() {
            p.push(&piece, &mut out);
            pushed += piece.len();
            assert!(pushed <= MAX_LINE_BYTES + piece.len(), "never stopped");
        }
        // Each byte searched about once (a rescan per push would search ~64x as many).
        assert!(
            p.searched <= pushed * 2,
            "searched {} of {pushed}",
            p.searched
        );
        assert!(out.is_empty());
        // Normal streams are unaffected, even when a line arrives in many pieces.
        let mut p = SseParser::new();
        for b in b"data: ab" {
            p.push(std::slice::from_ref(b), &mut out);
        }
        p.push(b"c\n\n", &mut out);
        assert_eq!(out[0].data, "abc");
        assert!(!p.overflowed());
    }

    #[test]
    fn lone_cr_line_endings_and_unterminated_tail() {
        let out = parse_in_pieces(b"data: a\r\rdata: b\r\r", &[8]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].data, "b");
        // An event never closed by a blank line is dropped.
        assert!(parse_in_pieces(b"data: never closed", &[]).is_empty());
    }
}
