//! What an HTTP/2 client is in the middle of sending, read off the bytes
//! as they pass (RFC 9113 §3.4 preface, §4.1 frame layout): the gateway
//! times the preface and every header block against `header_timeout`, as
//! it times an HTTP/1 request head. A header block (a HEADERS frame and
//! its CONTINUATION frames) blocks the whole connection until it ends
//! (§6.10), so one that never ends is a slowloris on every stream.

/// What an HTTP/2 connection opens with (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PREFACE_LEN: usize = PREFACE.len();
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Bytes of the preface seen so far.
    Preface(usize),
    /// Bytes of the next frame header seen so far.
    FrameHeader(usize),
    /// Bytes of the current frame's payload still to come.
    Payload(usize),
}

/// Follows the client's frames without keeping their payloads.
#[derive(Debug, Clone)]
pub struct FrameTracker {
    stage: Stage,
    header: [u8; FRAME_HEADER_LEN],
    /// Type of the frame whose payload is passing.
    kind: u8,
    /// A HEADERS frame came without END_HEADERS; its block goes on.
    block_open: bool,
}

impl Default for FrameTracker {
    fn default() -> Self {
        Self {
            stage: Stage::Preface(0),
            header: [0; FRAME_HEADER_LEN],
            kind: 0,
            block_open: false,
        }
    }
}

impl FrameTracker {
    /// Bytes the client sent, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.stage {
                Stage::Preface(seen) => {
                    let n = bytes.len().min(PREFACE_LEN - seen);
                    bytes = &bytes[n..];
                    self.stage = if seen + n == PREFACE_LEN {
                        Stage::FrameHeader(0)
                    } else {
                        Stage::Preface(seen + n)
                    };
                }
                Stage::FrameHeader(have) => {
                    let n = bytes.len().min(FRAME_HEADER_LEN - have);
                    self.header[have..have + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if have + n < FRAME_HEADER_LEN {
                        self.stage = Stage::FrameHeader(have + n);
                        continue;
                    }
                    let h = self.header;
                    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                    self.kind = h[3];
                    let end_headers = h[4] & END_HEADERS != 0;
                    match self.kind {
                        HEADERS => self.block_open = !end_headers,
                        CONTINUATION if end_headers => self.block_open = false,
                        _ => {}
                    }
                    self.stage = if len == 0 {
                        Stage::FrameHeader(0)
                    } else {
                        Stage::Payload(len)
                    };
                }
                Stage::Payload(left) => {
                    let n = bytes.len().min(left);
                    bytes = &bytes[n..];
                    self.stage = if n == left {
                        Stage::FrameHeader(0)
                    } else {
                        Stage::Payload(left - n)
                    };
                }
            }
        }
    }

    /// Whether the client is in the middle of something that must end
    /// within `header_timeout`: the preface, a frame header, or a header
    /// block (its frames' payloads included).
    pub fn busy(&self) -> bool {
        match self.stage {
            Stage::Preface(_) => true,
            Stage::FrameHeader(have) => have > 0 || self.block_open,
            Stage::Payload(_) => self.block_open || matches!(self.kind, HEADERS | CONTINUATION),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn the_preface_header_blocks_and_partial_frame_headers_are_busy() {
        let mut t = FrameTracker::default();
        assert!(t.busy(), "nothing yet: the preface is due");
        t.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n");
        assert!(t.busy());
        t.feed(b"\r\n");
        assert!(!t.busy(), "preface done");
        let settings = frame(0x4, 0, 0, &[]);
        t.feed(&settings[..4]);
        assert!(t.busy(), "half a frame header");
        t.feed(&settings[4..]);
        assert!(!t.busy());
        // A header block in three frames, each byte fed alone.
        let open = frame(HEADERS, 0, 1, b"abc");
        let more = frame(CONTINUATION, 0, 1, b"def");
        let end = frame(CONTINUATION, END_HEADERS, 1, b"g");
        for b in open.iter().chain(&more) {
            t.feed(&[*b]);
            assert!(t.busy());
        }
        t.feed(&end[..end.len() - 1]);
        assert!(t.busy(), "the last frame's payload is still coming");
        t.feed(&end[end.len() - 1..]);
        assert!(!t.busy(), "block ended");
        // DATA and a whole HEADERS frame in one read: not busy after.
        let mut both = frame(0x0, 0, 1, &[0; 100]);
        both.extend(frame(HEADERS, END_HEADERS | 0x1, 3, b"xyz"));
        t.feed(&both);
        assert!(!t.busy());
        // A DATA payload passing slowly is the body timeout's business.
        let data = frame(0x0, 0, 1, &[0; 10]);
        t.feed(&data[..12]);
        assert!(!t.busy());
    }
}
