//! Stop strings: the end markers of a chat template that a model writes as text rather than as
//! its end-of-generation token. A base model on the fallback template (ChatML, whose markers are
//! not tokens of its vocabulary) writes `<|im_end|>` letter by letter, then invents the next
//! turn. The reply ends at the first marker; text that might be the start of one is held back
//! until it is known not to be, so no part of a marker is ever sent.

/// ChatML's markers: the end of a turn, the start of the next, and the end of a text.
pub const CHATML_STOPS: &[&str] = &["<|im_end|>", "<|im_start|>", "<|endoftext|>"];

/// A reply's text as it is generated, cut at the first stop string.
pub struct StopFilter {
    stops: &'static [&'static str],
    held: String,
    stopped: bool,
}

impl StopFilter {
    pub fn new(stops: &'static [&'static str]) -> Self {
        Self {
            stops,
            held: String::new(),
            stopped: false,
        }
    }

    /// The text to send now, and whether a stop string was met (nothing after it is sent).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        if self.stops.is_empty() {
            return (text.to_owned(), false);
        }
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            self.held.truncate(at);
            self.stopped = true;
            return (std::mem::take(&mut self.held), true);
        }
        let keep = self
            .stops
            .iter()
            .map(|stop| tail_that_starts(&self.held, stop))
            .max()
            .unwrap_or(0);
        let send = self.held.len() - keep;
        let out = self.held[..send].to_owned();
        self.held.drain(..send);
        (out, false)
    }

    /// What was held back when the reply ends without a stop string: it was text after all.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest end of `text` that is the start of `stop` (shorter than it).
pub(super) fn tail_that_starts(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.is_char_boundary(n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every piece of `pieces` through one filter: what was sent, and whether it stopped.
    fn run(pieces: &[&str]) -> (String, bool) {
        let mut filter = StopFilter::new(CHATML_STOPS);
        let mut sent = String::new();
        for piece in pieces {
            let (out, stopped) = filter.push(piece);
            sent.push_str(&out);
            if stopped {
                return (sent, true);
            }
        }
        sent.push_str(&filter.finish());
        (sent, false)
    }

    #[test]
    fn a_reply_ends_at_the_first_marker_however_it_is_split() {
        let reply = "Paris is the capital.<|im_end|>\n<|im_start|>user\nAnd Spain?";
        for size in 1..=reply.len() {
            let pieces: Vec<String> = reply
                .as_bytes()
                .chunks(size)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
            assert_eq!(
                run(&pieces),
                ("Paris is the capital.".into(), true),
                "pieces of {size}"
            );
        }
        assert_eq!(run(&["a<|im_start|>b"]), ("a".into(), true));
        assert_eq!(run(&["done<|endoftext|>"]), ("done".into(), true));
    }

    #[test]
    fn no_part_of_a_marker_is_sent_before_it_is_known_not_to_be_one() {
        let mut filter = StopFilter::new(CHATML_STOPS);
        assert_eq!(filter.push("x <|im"), ("x ".into(), false));
        assert_eq!(filter.push("_e"), (String::new(), false));
        // Not a marker after all: it goes out, and so does what follows.
        assert_eq!(filter.push("xit|> y"), ("<|im_exit|> y".into(), false));
        assert_eq!(filter.push(" <"), (" ".into(), false));
        assert_eq!(
            filter.finish(),
            "<",
            "a reply may end in what looked like a start"
        );
    }

    #[test]
    fn without_stop_strings_text_passes_at_once_and_unicode_is_kept_whole() {
        let mut filter = StopFilter::new(&[]);
        assert_eq!(filter.push("<|im_end|>"), ("<|im_end|>".into(), false));
        assert_eq!(
            run(&["héllo ", "wörld ", "漢字<", "|im_end|>"]),
            ("héllo wörld 漢字".into(), true)
        );
        assert_eq!(tail_that_starts("漢<|", "<|im_end|>"), 2);
        assert_eq!(tail_that_starts("", "<|im_end|>"), 0);
        assert_eq!(tail_that_starts("<|im_end|", "<|im_end|>"), 9);
    }
}
