//! Server-sent events as they arrive: bytes in, the `data` of each complete event out
//! (the HTML event-stream rules, reduced to what a JSON-RPC client needs). Events without
//! data (an MCP 2025-11-25 priming event is an id and an empty `data`), comment lines and
//! the `event`, `id` and `retry` fields are skipped; an event the stream does not end with
//! a blank line is never dispatched. Used by the MCP probe's transport.

/// The parser's state between chunks: a line cut by a chunk boundary, and the data of the
/// event under way.
#[derive(Debug, Default)]
pub(super) struct SseParser {
    line: Vec<u8>,
    /// A CR ended the last line: an LF right after it belongs to the same line end.
    after_cr: bool,
    data: String,
    /// Whether the event under way had a `data` field at all.
    has_data: bool,
}

impl SseParser {
    /// Feeds `bytes`; answers the data of every event they completed, in order.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    events.extend(self.line_ended(&String::from_utf8_lossy(&line)));
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    fn line_ended(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            return self.dispatch();
        }
        let (field, value) = match line.split_once(':') {
            Some(("", _)) => return None, // a comment
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        None
    }

    /// The event's data, unless it has none worth parsing (absent, empty or blank).
    fn dispatch(&mut self) -> Option<String> {
        let data = std::mem::take(&mut self.data);
        let had_data = std::mem::take(&mut self.has_data);
        (had_data && !data.trim().is_empty()).then_some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<String> {
        let mut parser = SseParser::default();
        chunks
            .iter()
            .flat_map(|c| parser.push(c.as_bytes()))
            .collect()
    }

    #[test]
    fn events_are_split_on_blank_lines_and_data_lines_joined() {
        let body = "event: message\ndata: {\"a\":\ndata: 1}\n\n: comment\nid: 7\ndata: two\n\n";
        assert_eq!(events(&[body]), ["{\"a\":\n1}", "two"]);
    }

    #[test]
    fn priming_and_comment_only_events_yield_nothing() {
        let body = ": keep-alive\n\nid: 1\r\ndata: \r\n\r\nid: 2\ndata:\n\nretry: 100\n\nid: 3\ndata: {}\n\n";
        assert_eq!(events(&[body]), ["{}"]);
    }

    #[test]
    fn line_ends_may_be_cr_lf_or_crlf_even_across_chunks() {
        assert_eq!(events(&["data: a\r", "\n\r", "\ndata: b\r\r"]), ["a", "b"]);
        assert_eq!(events(&["da", "ta:x\n", "\n"]), ["x"]);
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        assert!(events(&["data: cut
"])
        .is_empty());
    }
}
