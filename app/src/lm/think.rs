//! The `<think>…</think>` splitter, for models whose server leaves their reasoning in the text.
use super::LmEvent;

/// Splits a `<think>…</think>` block at the start of a reply (models whose server does not
/// separate reasoning itself) from the answer, as the text streams in: tags may be cut across
/// pieces. Text that only might be the start of a tag is held back until the next piece.
#[derive(Default)]
pub struct ThinkSplitter {
    state: ThinkState,
    /// Text not yet given out: a possible start of `<think>` or `</think>`.
    held: String,
}

#[derive(Default, PartialEq)]
enum ThinkState {
    /// Nothing but whitespace yet: the reply may still open with `<think>`.
    #[default]
    Start,
    Thinking,
    /// After `</think>`, before the answer's first visible character.
    AnswerStart,
    Answer,
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

impl ThinkSplitter {
    /// Events for a piece of the reply's content.
    pub fn push(&mut self, piece: &str) -> Vec<LmEvent> {
        let mut events = Vec::new();
        self.held.push_str(piece);
        loop {
            match self.state {
                ThinkState::Start => {
                    let trimmed = self.held.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(THINK_OPEN) {
                        self.held = rest.to_owned();
                        self.state = ThinkState::Thinking;
                        continue;
                    }
                    if !THINK_OPEN.starts_with(trimmed) {
                        self.state = ThinkState::Answer;
                        continue;
                    }
                    return events;
                }
                ThinkState::Thinking => {
                    if let Some(at) = self.held.find(THINK_CLOSE) {
                        let rest = self.held.split_off(at);
                        push_piece(
                            &mut events,
                            LmEvent::Reasoning(std::mem::take(&mut self.held)),
                        );
                        self.held = rest[THINK_CLOSE.len()..].to_owned();
                        self.state = ThinkState::AnswerStart;
                        continue;
                    }
                    // Keep back a tail that could be the start of `</think>`.
                    let keep = (1..THINK_CLOSE.len())
                        .rev()
                        .find(|&n| {
                            self.held.len() >= n
                                && self.held.is_char_boundary(self.held.len() - n)
                                && THINK_CLOSE.starts_with(&self.held[self.held.len() - n..])
                        })
                        .unwrap_or(0);
                    let tail = self.held.split_off(self.held.len() - keep);
                    push_piece(
                        &mut events,
                        LmEvent::Reasoning(std::mem::replace(&mut self.held, tail)),
                    );
                    return events;
                }
                ThinkState::AnswerStart => {
                    // The blank lines between the reasoning and the answer are not the answer.
                    let trimmed = self.held.trim_start();
                    if trimmed.is_empty() {
                        self.held.clear();
                        return events;
                    }
                    self.held = trimmed.to_owned();
                    self.state = ThinkState::Answer;
                }
                ThinkState::Answer => {
                    push_piece(&mut events, LmEvent::Text(std::mem::take(&mut self.held)));
                    return events;
                }
            }
        }
    }

    /// Whether text is held back because it might still open a `<think>` block.
    pub fn holding(&self) -> bool {
        self.state == ThinkState::Start && !self.held.is_empty()
    }

    /// The reply did not go on to open a `<think>` block: what was held back is answer text.
    pub fn give_up(&mut self) -> Vec<LmEvent> {
        if self.state != ThinkState::Start {
            return Vec::new();
        }
        self.state = ThinkState::Answer;
        let mut events = Vec::new();
        push_piece(&mut events, LmEvent::Text(std::mem::take(&mut self.held)));
        events
    }

    /// The reply ended: whatever was held back, as what it turned out to be.
    pub fn finish(&mut self) -> Vec<LmEvent> {
        let held = std::mem::take(&mut self.held);
        let mut events = Vec::new();
        match self.state {
            ThinkState::Thinking => push_piece(&mut events, LmEvent::Reasoning(held)),
            ThinkState::AnswerStart => {}
            ThinkState::Start | ThinkState::Answer => push_piece(&mut events, LmEvent::Text(held)),
        }
        events
    }
}

fn push_piece(events: &mut Vec<LmEvent>, event: LmEvent) {
    match &event {
        LmEvent::Reasoning(t) | LmEvent::Text(t) if t.is_empty() => {}
        _ => events.push(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&str]) -> (String, String) {
        let mut splitter = ThinkSplitter::default();
        let mut events: Vec<LmEvent> = pieces.iter().flat_map(|p| splitter.push(p)).collect();
        events.extend(splitter.finish());
        let (mut reasoning, mut text) = (String::new(), String::new());
        for event in events {
            match event {
                LmEvent::Reasoning(t) => reasoning.push_str(&t),
                LmEvent::Text(t) => text.push_str(&t),
                other => panic!("unexpected {other:?}"),
            }
        }
        (reasoning, text)
    }

    #[test]
    fn a_think_block_is_reasoning_however_the_tags_are_cut() {
        let whole = "\n<think>Let me see: 2 < 3.</think>\n\nThe answer is **yes**.";
        for cut_a in 0..whole.len() {
            for cut_b in cut_a..whole.len() {
                let pieces = [&whole[..cut_a], &whole[cut_a..cut_b], &whole[cut_b..]];
                assert_eq!(
                    split(&pieces),
                    ("Let me see: 2 < 3.".into(), "The answer is **yes**.".into()),
                    "{pieces:?}"
                );
            }
        }
    }

    #[test]
    fn text_without_a_think_block_passes_through_exactly() {
        for whole in [
            "  <b>hi</b>",
            " <thin",
            "\n\n",
            "a <think> in the middle",
            "<",
        ] {
            for cut in 0..=whole.len() {
                assert_eq!(
                    split(&[&whole[..cut], &whole[cut..]]),
                    (String::new(), whole.to_owned())
                );
            }
        }
        // An unfinished think block is all reasoning, even a partial closing tag.
        assert_eq!(
            split(&["<think>hmm</thi"]),
            ("hmm</thi".into(), String::new())
        );
    }

    #[test]
    fn text_held_for_a_possible_think_block_is_given_up_as_text() {
        let mut splitter = ThinkSplitter::default();
        assert!(splitter.push("\n <th").is_empty());
        assert!(splitter.holding());
        assert_eq!(splitter.give_up(), [LmEvent::Text("\n <th".into())]);
        assert!(!splitter.holding());
        // From then on it is all answer, even a late `<think>`.
        assert_eq!(splitter.push("ink>x"), [LmEvent::Text("ink>x".into())]);
    }
}
