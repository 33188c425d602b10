//! From token bytes to the text a client sees: whole UTF-8 characters only (a character may
//! span tokens), and stop strings cut out — never emitted, not even a prefix of one that
//! spans several tokens.

#[derive(Debug, Default)]
pub(crate) struct TextOut {
    /// Bytes of an unfinished UTF-8 character.
    partial: Vec<u8>,
    /// Text held back because it could be the start of a stop string.
    held: String,
    stops: Vec<String>,
}

/// What a token added.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text to send now (may be empty).
    Text(String),
    /// A stop string was reached: the text before it, and generation ends.
    Stop(String),
}

impl TextOut {
    pub fn new(stops: Vec<String>) -> Self {
        TextOut {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..TextOut::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Piece {
        self.partial.extend_from_slice(bytes);
        self.decode_partial(false);
        if let Some(at) = self.first_stop() {
            self.held.truncate(at);
            return Piece::Stop(std::mem::take(&mut self.held));
        }
        let keep = self.stop_prefix_len();
        let emit = self.held.len() - keep;
        let rest = self.held.split_off(emit);
        Piece::Text(std::mem::replace(&mut self.held, rest))
    }

    /// The text still held at the end of generation.
    pub fn finish(&mut self) -> String {
        self.decode_partial(true);
        std::mem::take(&mut self.held)
    }

    /// Moves the complete characters of `partial` to `held`; at the end, invalid or cut
    /// sequences become U+FFFD.
    fn decode_partial(&mut self, at_end: bool) {
        loop {
            match std::str::from_utf8(&self.partial) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.partial.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.held
                        .push_str(&String::from_utf8_lossy(&self.partial[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            self.partial.drain(..valid + bad);
                        }
                        None if at_end => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            self.partial.clear();
                            return;
                        }
                        None => {
                            self.partial.drain(..valid);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn first_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// The longest end of `held` that begins some stop string.
    fn stop_prefix_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if i > best && self.held.ends_with(&stop[..i]) {
                    best = i;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let mut t = TextOut::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            match t.push(p) {
                Piece::Text(s) => out.push_str(&s),
                Piece::Stop(s) => {
                    out.push_str(&s);
                    return (out, true);
                }
            }
        }
        out.push_str(&t.finish());
        (out, false)
    }

    #[test]
    fn a_stop_string_split_across_tokens_is_never_emitted() {
        assert_eq!(
            run(&["END"], &[b"abc E", b"N", b"D tail"]),
            ("abc ".into(), true)
        );
        let mut t = TextOut::new(vec!["END".into()]);
        assert_eq!(t.push(b"abc E"), Piece::Text("abc ".into()));
        assert_eq!(t.push(b"N"), Piece::Text(String::new()));
        assert_eq!(t.push(b"x"), Piece::Text("ENx".into()));
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        assert_eq!(run(&["zz", "b"], &[b"a", b"bzz"]), ("a".into(), true));
    }

    #[test]
    fn characters_split_across_tokens_come_out_whole() {
        let e = "é€".as_bytes();
        let mut t = TextOut::new(vec![]);
        assert_eq!(t.push(&e[..1]), Piece::Text(String::new()));
        assert_eq!(t.push(&e[1..3]), Piece::Text("é".into()));
        assert_eq!(t.push(&e[3..]), Piece::Text("€".into()));
        assert_eq!(
            run(&[], &[b"a\xff", &e[..1]]),
            ("a\u{fffd}\u{fffd}".into(), false)
        );
    }

    #[test]
    fn text_without_stops_flows_at_once() {
        assert_eq!(run(&[], &[b"he", b"llo"]), ("hello".into(), false));
        assert_eq!(run(&["x"], &[b"he", b"llo"]), ("hello".into(), false));
    }
}
