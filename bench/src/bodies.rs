//! The bodies of a run's messages, plain and pre-compressed: building each
//! message's frame and checking its echo.

use crate::deflate::{self, Inflater};
use crate::ws::{self, Kind, RSV1, TAG_LEN};

/// The bodies (all but the tag) messages cycle through, and the same
/// pre-compressed for connections that negotiated permessage-deflate.
pub struct Bodies {
    plain: Vec<Vec<u8>>,
    deflated: Vec<Vec<u8>>,
}

impl Bodies {
    /// `size` bytes per message, tag included; `deflate`: compress them too.
    pub fn new(kind: Kind, size: usize, deflate: bool) -> Bodies {
        let plain = ws::bodies(kind, size);
        let deflated = if deflate {
            let mut c = crate::chat::compressor();
            plain
                .iter()
                .map(|b| crate::chat::deflate(&mut c, b))
                .collect()
        } else {
            Vec::new()
        };
        Bodies { plain, deflated }
    }

    /// Appends message `seq` of connection `id` as a masked frame.
    pub fn encode(
        &self,
        kind: Kind,
        deflate: bool,
        id: u32,
        seq: u64,
        key: [u8; 4],
        out: &mut Vec<u8>,
    ) {
        let i = (seq % self.plain.len() as u64) as usize;
        let tag = ws::tag(id, seq);
        if deflate {
            let head = deflate::stored_tag(&tag);
            ws::encode(kind.opcode() | RSV1, &head, &self.deflated[i], key, out);
        } else {
            ws::encode(kind.opcode(), &tag, &self.plain[i], key, out);
        }
    }

    /// Whether `frame` (in `buf`) is the echo of message `seq` of connection `id`.
    pub fn check(
        &self,
        kind: Kind,
        frame: &ws::ServerFrame,
        buf: &[u8],
        inflater: &mut Inflater,
        id: u32,
        seq: u64,
    ) -> Result<(), String> {
        let body = &self.plain[(seq % self.plain.len() as u64) as usize];
        let raw = &buf[frame.payload.clone()];
        let payload = if frame.compressed {
            inflater.message(raw, TAG_LEN + body.len())?
        } else {
            raw
        };
        let ok = frame.fin
            && frame.opcode == kind.opcode()
            && payload.len() == TAG_LEN + body.len()
            && payload[..TAG_LEN] == ws::tag(id, seq)
            && payload[TAG_LEN..] == body[..];
        if ok {
            return Ok(());
        }
        Err(format!(
            "echo {seq} wrong (opcode {}, fin {}, compressed {}, {} bytes, tag {:?})",
            frame.opcode,
            frame.fin,
            frame.compressed,
            payload.len(),
            String::from_utf8_lossy(&payload[..payload.len().min(TAG_LEN)])
        ))
    }
}
