//! Text an agent wrote (a reply, an error message) made safe to show: control characters and
//! invisible format characters (bidi overrides, zero-width characters, line and paragraph
//! separators, the byte-order mark) would let an agent forge or hide text in a log line, an
//! event or the status page.

/// Longest error message taken from an agent, in characters.
pub const AGENT_ERROR_CHARS: usize = 200;

/// Whether `c` changes how text around it reads without being visible itself: Unicode's
/// format characters (general category Cf) and the line and paragraph separators.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// `text` on one line, at most `max_chars` characters: line breaks and tabs become spaces,
/// other control characters and invisible format characters are dropped.
pub fn clean(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() || is_invisible(c) => None,
            c => Some(c),
        })
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bidi_zero_width_separators_and_bom_are_dropped() {
        let hostile =
            "a\u{202E}b\u{2066}c\u{200B}d\u{200F}e\u{2028}f\u{2029}g\u{FEFF}h\u{1b}[1mi\0";
        assert_eq!(clean(hostile, 100), "abcdefgh[1mi");
        assert_eq!(clean("one\ntwo\tthree", 100), "one two three");
    }

    #[test]
    fn cleaned_text_is_bounded_in_characters() {
        assert_eq!(clean(&"é".repeat(500), 200).chars().count(), 200);
        assert_eq!(clean("ok", 200), "ok");
    }
}
