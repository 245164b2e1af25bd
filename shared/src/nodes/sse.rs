//! Reading a server-sent event stream (a provider's streamed answer) as its bytes arrive, by the
//! WHATWG algorithm (html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
//! lines end in CRLF, LF or CR; `event:` names the event, `data:` lines join with LF; a blank
//! line dispatches; `:` starts a comment. Ours and not a crate's: the bytes come from the
//! SSRF-guarded read loop (`outbound::send_observed`) chunk by chunk, not as a byte `Stream`.

/// One dispatched event: its name (`message` when none was given) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    pub event: String,
    pub data: String,
}

/// Feeds chunks in, takes whole events out. A chunk may end anywhere, even inside a UTF-8
/// character or between CR and LF.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    event: String,
    data: Vec<String>,
    /// The last byte fed was a CR: a LF right after it ends no second line.
    after_cr: bool,
}

impl SseParser {
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        let mut out = Vec::new();
        for &byte in chunk {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
                    if let Some(message) = self.line(&line) {
                        out.push(message);
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.pending.push(byte);
                }
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            if self.data.is_empty() {
                self.event.clear();
                return None;
            }
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseMessage { event: if event.is_empty() { "message".into() } else { event }, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_whole_however_the_bytes_are_cut() {
        let stream =
            "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: ping\n\ndata: one\ndata:two\n\nid: 7\rdata: é\r\r";
        let whole = SseParser::default().feed(stream.as_bytes());
        assert_eq!(
            whole,
            [
                SseMessage { event: "message_start".into(), data: "{\"a\":1}".into() },
                SseMessage { event: "message".into(), data: "one\ntwo".into() },
                SseMessage { event: "message".into(), data: "é".into() },
            ]
        );
        // Byte by byte (through the CRLF pairs and inside the two-byte é): the same events.
        let mut parser = SseParser::default();
        let split: Vec<SseMessage> = stream.as_bytes().iter().flat_map(|b| parser.feed(&[*b])).collect();
        assert_eq!(split, whole);
    }

    #[test]
    fn an_event_without_a_blank_line_after_it_is_not_dispatched() {
        assert!(SseParser::default().feed(b"data: half").is_empty());
    }
}
